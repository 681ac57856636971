"""Training results rows' networks on this machine: one at a time or as one population (cluster.py: on a Ray
cluster)."""
import network
import report


def train_networks(rows, splits, args, *, progress):
    """The scores of the rows' networks: trained alone (--population 1) or as one population; `progress`: show a
    bar over the epochs of a long training."""
    if args.population == 1:
        return [network.train_and_evaluate(splits, seed=row['seed'], learning_rate=row['learning_rate'],
                                           weight_decay=row['weight_decay'], epochs=args.epochs,
                                           batch_size=args.batch_size, progress=progress) for row in rows]
    return network.train_and_evaluate_population(
        splits, seeds=[row['seed'] for row in rows], learning_rates=[row['learning_rate'] for row in rows],
        weight_decays=[row['weight_decay'] for row in rows], epochs=args.epochs, batch_size=args.batch_size,
        progress=progress)


class LocalTraining:
    """Trains rows' networks on this machine, on the splits loaded once (cluster.RayTraining: on a Ray cluster)."""

    def __init__(self, splits, args):
        self.splits, self.args = splits, args

    def start(self, rows):
        """A function that trains the rows' networks when called and returns their scores."""
        return lambda: train_networks(rows, self.splits, self.args, progress=report.bars_shown(self.args))
