"""Training results rows' networks on this machine: one at a time or as one population (cluster.py: on a Ray
cluster); Hyperband's continue from their weights at their last rung (rung_weights.py)."""
import network
import report
import rung_weights
import searches


def train_networks(rows, splits, args, *, progress):
    """The scores of the rows' networks (with --curves, each with its curve): trained alone (--population 1) or as one
    population; `progress`: show a bar over the epochs of a long training."""
    if args.population == 1:
        return [network.train_and_evaluate(splits, seed=row['seed'], learning_rate=row['learning_rate'],
                                           weight_decay=row['weight_decay'], epochs=args.epochs,
                                           batch_size=args.batch_size, progress=progress, curves=args.curves)
                for row in rows]
    return network.train_and_evaluate_population(
        splits, seeds=[row['seed'] for row in rows], learning_rates=[row['learning_rate'] for row in rows],
        weight_decays=[row['weight_decay'] for row in rows], epochs=args.epochs, batch_size=args.batch_size,
        progress=progress, curves=args.curves)


def continue_networks(rows, splits, args, *, progress):
    """The scores of Hyperband's rows' networks, trained as one population (whatever --population) to their rows'
    epochs, each from its configuration's weights at its last rung (saved beside args.output; a fresh network at its
    first rung), whose weights after are saved there before the scores return. The rows are of one rung: their
    networks have all trained the same epochs before it."""
    before = rows[0]['epochs_before']
    scores, parameters = network.train_and_evaluate_from(
        splits, seeds=[row['seed'] for row in rows],
        weights=[rung_weights.load(args.output, row, before) if before else None for row in rows],
        learning_rates=[row['learning_rate'] for row in rows], weight_decays=[row['weight_decay'] for row in rows],
        epochs=rows[0]['epochs'] - before, batch_size=args.batch_size, progress=progress, curves=args.curves)
    for member, row in enumerate(rows):
        rung_weights.save(args.output, row, {name: tensor[member].clone().cpu()
                                             for name, tensor in parameters.items()})
    return scores


class LocalTraining:
    """Trains rows' networks on this machine, on the splits loaded once (cluster.RayTraining: on a Ray cluster)."""

    def __init__(self, splits, args):
        self.splits, self.args = splits, args

    def submit(self, rows):
        """A function that trains the rows' networks when called and returns their scores."""
        train = continue_networks if searches.search_class(rows[0]['method']).multi_fidelity else train_networks
        return lambda: train(rows, self.splits, self.args, progress=report.bars_shown(self.args))
