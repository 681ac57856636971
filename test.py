"""The experiment: Bayesian optimisation against quasi-random Sobol search for the learning rate and weight decay of a
LeNet-5-style CNN, a reproduction of "Hyperparameters tuning for Convolutional Neural Network based on Global
Optimization" (J. Bartoli, I. Erpichini), with the methods people pick today beside them: bayes_opt's own Gaussian
process, Optuna's TPE and Gaussian-process samplers, uniform random and grid search, and Hyperband (searches.py).

Edit the constants at the top of this file or override them with flags. Every evaluation is appended to the output
CSV as soon as it ends, and the same command run again resumes a stopped run; once the searches end their tables (the
paper's Table II) are printed, then the mean and standard deviation over repetitions (the paper's Table I) with
statistics below it, and summaries and plots are written beside the CSV. The networks train here, as populations
(--population), on a Ray cluster (--ray), or are answered from a benchmark table (--table). --report trains nothing:
it rebuilds a results file's tables (report.py), compares methods across several files (--across) or checks a run on a
table against real training (--against; comparison.py).
"""
import stopping  # imports only the standard library: a stop while the libraries below load is one line

if __name__ == '__main__':
    stopping.exit_while_starting('nothing was written')

import argparse
import contextlib
import itertools
import os

import torch

import command_line
import comparison
import files
import local_training
import network
import proposals
import report
import results
import rung_weights
import search_states
import run_settings
import searches
import table

# The paper's experiment: the defaults of the flags (python test.py --help)
DATASET = 'cifar10'  # 'cifar10' or 'mnist' as in the paper; 'fashion-mnist'; 'digits' is the offline quick start
# The searches (their tables in this order): 'bayesian', 'sobol' (the paper's), 'bayesian-library' (bayes_opt 3.4's
# own Gaussian process), 'tpe', 'gp' (Optuna's samplers), 'random', 'grid', 'hyperband' (multi-fidelity):
# searches.METHODS
METHODS = ('bayesian', 'sobol')
LEARNING_RATE_BOUNDS = (0.0001, 0.1)  # the search box
WEIGHT_DECAY_BOUNDS = (0, 0.001)
LR_SCALE = 'linear'  # as in the paper; 'log': the searches see log10 of the learning rate
EVALUATIONS = 25  # trained networks per search
INIT_POINTS = 5  # guided searches (bayesian, bayesian-library, tpe, gp): random points before the model proposes
EPOCHS = 50  # training epochs of every evaluated network (hyperband's most; each search spends EVALUATIONS x EPOCHS)
REPETITIONS = 10  # independent repetitions of each search
BATCH_SIZE = 64  # for training, validation and test
VALIDATION_SIZE = None  # the last images of the training set; None: the dataset's (10,000; 360 for digits)
TRAINING_SIZE = None  # train on the first N images before them; None: all
SEED = 0  # seeds every search and every network (see searches.seed_for)
CURVES = False  # record every network's validation and test scores after each epoch (beside the results)
TABLE = None  # a finished grid run with curves: every evaluation answered from it instead of trained (table.py)
# Most networks trained at once, in lockstep (memory grows with it); 1: one at a time. None: 250 on a GPU (all the
# Sobol points of the experiment at once), 10 on CPU (as fast as 20 there, with half the memory; 5 and 50 are slower).
POPULATION = None
# With populations, when the Sobol and random points train: 'after' the guided searches, or in 'rounds', a share with
# each guided round (faster only where a step costs little more for more members: docs/speed.md)
SCHEDULE = 'after'
DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
RAY = None  # train on a Ray cluster: 'auto' (the one running here), 'local' (start one here), 'HOST:PORT'; None: here
RAY_WORKER_CPUS = None  # with RAY on CPU: torch threads per worker; None: 4 (a node's CPUs where it has fewer)
# Processes that the adaptive searches' proposals are shared among (the same points whatever the number); None: the
# cores this process may use, once a round's proposals take a second here (proposals.HANDOFF_SECONDS); 1: here
PROPOSAL_PROCESSES = None
DATA_DIR = 'data'  # where the datasets are, or are downloaded to
OUTPUT = 'results.csv'  # one row per evaluation; rerunning the same command resumes it

SCHEDULE_NAMES = ('after', 'rounds')


def parse_methods(text):
    """'bayesian,sobol,random' (names in searches.METHODS, comma-separated; 'both': bayesian,sobol) -> the methods."""
    methods = ('bayesian', 'sobol') if text == 'both' else tuple(text.split(','))
    for method in methods:
        if method not in searches.METHODS:
            raise argparse.ArgumentTypeError(f'invalid method {method!r} (choose from {", ".join(searches.METHODS)}, '
                                             'comma-separated, or both)')
    if len(set(methods)) < len(methods):
        raise argparse.ArgumentTypeError(f'method list {text!r} names a method twice')
    return methods


def build_parser():
    """The flags, in three groups: what the experiment is (the run's settings.Settings), how it is computed, and its
    files."""
    parser = command_line.ArgumentParser(description=__doc__, formatter_class=command_line.HelpFormatter)
    experiment = parser.add_argument_group('the experiment (saved beside the results, and checked on resume)')
    computation = parser.add_argument_group('how it is computed')
    files = parser.add_argument_group('the files')
    command_line.add_data_arguments(experiment, dataset=DATASET, data_dir=DATA_DIR, validation_size=VALIDATION_SIZE,
                                    training_size=TRAINING_SIZE, batch_size=BATCH_SIZE, device=DEVICE,
                                    computation=computation, files=files)
    experiment.add_argument('--method', type=parse_methods, default=METHODS, metavar='METHOD[,METHOD...]',
                            help="the searches to run (their tables in this order): bayesian (the authors' Gaussian "
                                 "process), bayesian-library (bayes_opt 3.4's own), tpe, gp (Optuna's TPE and "
                                 "Gaussian-process samplers), sobol, random (uniform), grid (n x n), hyperband "
                                 "(multi-fidelity), comma-separated; both: bayesian,sobol")
    experiment.add_argument('--evaluations', type=int, default=EVALUATIONS,
                            help='trained networks per search (hyperband: it spends evaluations x epochs model-epochs)')
    experiment.add_argument('--init-points', type=int, default=INIT_POINTS,
                            help='guided searches (bayesian, bayesian-library, tpe, gp): random evaluations before '
                                 'the model proposes')
    experiment.add_argument('--epochs', type=int, default=EPOCHS, help='training epochs per evaluation')
    experiment.add_argument('--repetitions', type=int, default=REPETITIONS, help='independent runs of each search')
    experiment.add_argument('--learning-rate-bounds', type=float, nargs=2, metavar=('LOW', 'HIGH'),
                            default=LEARNING_RATE_BOUNDS, help='the learning-rate range searched')
    experiment.add_argument('--weight-decay-bounds', type=float, nargs=2, metavar=('LOW', 'HIGH'),
                            default=WEIGHT_DECAY_BOUNDS, help='the weight-decay range searched')
    experiment.add_argument('--lr-scale', choices=('linear', 'log'), default=LR_SCALE,
                            help='the scale the searches see the learning rate on')
    experiment.add_argument('--seed', type=int, default=SEED, help='seeds every search and network')
    experiment.add_argument('--curves', action=argparse.BooleanOptionalAction, default=CURVES,
                            help="record every network's validation and test scores after each epoch, in "
                                 "results.curves.csv beside the results (each epoch's scoring costs a pass over "
                                 "both splits)")
    experiment.add_argument('--table', type=command_line.or_none(str), default=TABLE, metavar='FILE',
                            help='answer every evaluation from the finished grid run with curves in FILE, a benchmark '
                                 'table, instead of training it (--population and --device then change nothing)')
    computation.add_argument('--population', type=int, default=POPULATION,
                             help='most networks trained at once as one population (None: 250 on a GPU, 10 on '
                                  'CPU); 1 trains one network at a time, search after search')
    computation.add_argument('--schedule', choices=SCHEDULE_NAMES, default=SCHEDULE,
                             help='with populations, when the Sobol and random points train: after the guided '
                                  'searches, or a share alongside each of their rounds')
    computation.add_argument('--proposal-processes', type=int, default=PROPOSAL_PROCESSES, metavar='N',
                             help="worker processes that the guided and multi-fidelity searches' proposals are shared "
                                  'among, the same points whatever N (None: the cores this process may use, once a '
                                  "round's proposals take over a second here; 1: in this process)")
    computation.add_argument('--ray', default=RAY, metavar='ADDRESS',
                             help='train on a Ray cluster: auto (the one running here), local (start one here), '
                                  'HOST:PORT')
    computation.add_argument('--ray-worker-cpus', type=int, default=RAY_WORKER_CPUS,
                             help="with --ray on CPU: the CPUs of each worker that trains a population (None: 4, or a "
                                  "node's CPUs where it has fewer)")
    files.add_argument('--output', default=OUTPUT,
                       help='the results CSV, one row per evaluation; if it exists, the run resumes it')
    files.add_argument('--fresh', action='store_true',
                       help='start over: move an existing results file, its configuration, summaries and plots aside '
                            '(never deleted)')
    files.add_argument('--report', metavar='FILE', nargs='+',
                       help='train nothing: print the tables of results file FILE and write its summaries and plots '
                            '(its settings come from its configuration file; other flags but --quiet and --across '
                            'are ignored); with several files, runs of the same methods and budget on different '
                            'tasks, compare the methods across them instead (see --across)')
    files.add_argument('--across', metavar='NAME.csv',
                       help='with --report: compare the methods across the files (mean best losses with bootstrap '
                            'intervals, normalised regret, ranks, Friedman test, critical-difference diagram), '
                            'writing NAME.across.json, .across.md, .ranks.png and .critical-difference.png (None: '
                            'beside the first file with several; with one file, only when given)')
    files.add_argument('--against', metavar='REAL.csv', nargs='+',
                       help='with --report FILE, a run on a benchmark table: check it against REAL.csv, the real '
                            'training of the same searches with the same settings (or several files of other '
                            'methods): per method the best losses side by side, a Mann-Whitney test each, ranks, '
                            'Spearman, the pooled bias and spread ratio, written as FILE-NAME.against.md')
    files.add_argument('--quiet', action='store_true',
                       help='no progress: no progress bars (shown on a terminal), no line per evaluation (otherwise)')
    return parser


def check_arguments(parser, args):
    """End with a one-line error (exit status 2) for any value outside what is allowed; the run's Settings."""
    try:
        settings = run_settings.Settings.of(args)
        settings.check()
    except ValueError as error:
        parser.error(str(error))
    args.validation_size = settings.validation_size
    command_line.check_device(parser, args.device, here=args.ray is None)  # with Ray, on the workers
    command_line.check_data_dir(parser, args)
    if args.population is None:
        args.population = default_population(args.device)
    command_line.check_positive_integers(parser, args, 'population', 'proposal_processes', 'ray_worker_cpus')
    if args.ray == '':
        parser.error("--ray '' is not an address: use auto, local or HOST:PORT")
    if args.ray_worker_cpus is not None and args.ray is None:
        parser.error(f'--ray-worker-cpus {args.ray_worker_cpus} needs --ray: without it the networks train here')
    for method in args.method if args.ray else ():
        refusal = searches.search_class(method).refusal(method, evaluations=args.evaluations, epochs=args.epochs,
                                                        ray=args.ray)
        if refusal:
            parser.error(refusal)
    if args.table is not None and args.ray is not None:
        parser.error(f'--ray {args.ray} has nothing to train with --table: every evaluation is answered from the table')
    return settings


def default_population(device):
    """POPULATION's None: 250 on a GPU (all the Sobol points of the paper's experiment at once), 10 on CPU."""
    return 250 if torch.device(device).type == 'cuda' else 10


def run_in_rounds(searches_to_run, training, args, results_file):
    """The searches, (method, repetition) pairs, to the end of their budgets. The adaptive ones (guided, multi-fidelity)
    advance in lockstep rounds: each asks every one for its next points (a guided search's one, a Hyperband rung),
    trains them in populations with an even share of the planned rows (--schedule rounds; else those train after the
    rounds), and tells each search its rows; the searches propose here or in --proposal-processes worker processes
    (proposals.py), the same points. After each round that records new rows the searches are saved
    (search_states), and a resume continues them from there. Returns the adaptive searches' rows, then the planned
    ones."""
    settings = results_file.settings
    made = [(method, repetition, settings.search(method, repetition)) for method, repetition in searches_to_run]
    planned = [row for method, repetition, search in made if search.planned
               for row in settings.rows_of(method, repetition, search.ask())]
    saved = saved_rounds(searches_to_run, planned, args, results_file)
    if saved:
        adaptive, adaptive_rows, shared, done = saved.adaptive, saved.adaptive_rows, saved.shared, saved.done
    else:
        adaptive = [(method, repetition, search) for method, repetition, search in made if not search.planned]
        adaptive_rows, shared, done = [[] for _ in adaptive], 0, 0
    for row in planned[:shared]:  # scored in the rounds before the stop
        row.update(results_file.recorded_scores(row))
    total = max([search.rounds if search.multi_fidelity else args.evaluations for _, _, search in adaptive], default=1)
    with contextlib.closing(proposals.proposing(adaptive, args.proposal_processes or len(os.sched_getaffinity(0)),
                                                at_once=args.proposal_processes is not None)) as proposer:
        for rounds in itertools.count(done + 1):  # the planned rows are shared over the `total` rounds of the longest
            asked = [[searches.answered_from_cache(row, rows) if searches.is_guided(method) else row
                      for row in settings.rows_of(method, repetition, points, len(rows) + 1)]
                     for (method, repetition, _), rows, points in zip(adaptive, adaptive_rows, proposer.ask())]
            if not any(asked):
                break
            end = len(planned) * min(rounds, total) // total if args.schedule == 'rounds' else 0
            scored = score_and_record([row for new in asked for row in new] + planned[shared:end], training, args,
                                      results_file)
            shared = max(shared, end)
            for rows, new in zip(adaptive_rows, asked):
                rows += new
            proposer.tell(asked)
            if not all(map(results_file.holds, scored)):  # a round replayed from the file saves nothing
                search_states.save(args.output, search_states.Rounds(
                    search_states.run_hash(results_file.configuration), searches_to_run,
                    [(method, repetition, pickled) for (method, repetition, _), pickled in
                     zip(adaptive, proposer.pickled())], adaptive_rows, shared, rounds))
    score_and_record(planned[shared:], training, args, results_file)
    return [row for rows in adaptive_rows for row in rows] + planned


def saved_rounds(searches_to_run, planned, args, results_file):
    """The state search_states saved after the last round of these searches of this run, if it checks (signed by this
    user's runs, of this configuration) and the results file records every row it holds, point and scores, and the
    planned rows it had scored; else None, said in a line where there is a state (the searches are then replayed). A
    new run reads none."""
    if not results_file.recorded:
        return None
    saved, why = search_states.load(args.output, search_states.run_hash(results_file.configuration), searches_to_run)
    if saved and not (all(map(results_file.holds, itertools.chain(*saved.adaptive_rows))) and all(
            results_file.recorded_scores(row) for row in planned[:saved.shared])):
        saved, why = None, 'the results file does not record every row it holds'
    if why:
        print(f'{files.searches_path(args.output)} is not used ({why}): the searches are replayed', flush=True)
    return saved


def run_searches(training, args, results_file):
    """Every repetition of every method's search: with --population 1 search after search, as the authors ran them
    (with --ray, in rounds), else all in one run_in_rounds. On resume the recorded rows are read, not trained; with
    --population 1 a search the file records whole is not replayed either (a guided one's model would need the
    machine that proposed its points, to the last digit, so a run extended to more repetitions could continue
    nowhere else)."""
    every_search = [(method, repetition) for method in args.method for repetition in range(1, args.repetitions + 1)]
    groups = [[search] for search in every_search] if args.population == 1 and not args.ray else [every_search]
    rows = [row for group in groups
            for row in recorded_search(group, results_file) or run_in_rounds(group, training, args, results_file)]
    rung_weights.remove(args.output)  # the searches have ended: no network of theirs continues
    search_states.remove(args.output)
    return rows


def recorded_search(group, results_file):
    """The rows of a group of one search that the results file records to its end, in order; else None."""
    if len(group) != 1:
        return None
    (method, repetition), = group
    rows = [results_file.recorded.get((method, repetition, iteration))
            for iteration in range(1, results_file.settings.rows_per_search(method) + 1)]
    return None if None in rows else rows


def score_and_record(rows, training, args, results_file):
    """Fill in the rows' scores in populations of at most args.population networks of the same epochs, from the
    results file where it records them, else by training (all started first: on a Ray cluster they train at once),
    and append each population's new rows, in order. A population the file holds in part is retrained whole."""
    rungs = {}
    for row in rows:
        rungs.setdefault((row['bracket'], row['epochs']), []).append(row)
    populations = [rung[start:start + args.population] for rung in rungs.values()
                   for start in range(0, len(rung), args.population)]
    recorded = [[results_file.recorded_scores(row) for row in population] for population in populations]
    started = []  # per population: the rows it trains (a repeat comes with its scores), and a wait for their scores
    for population, olds in zip(populations, recorded):
        untrained = [row for row in population if row['repeat_of'] is None]
        trains = any(old is None for row, old in zip(population, olds) if row['repeat_of'] is None)
        started.append((untrained, training.submit(untrained)) if trains else ([], lambda: []))  # all recorded
    for population, olds, (untrained, scores) in zip(populations, recorded, started):
        for row, row_scores in zip(untrained, scores()):
            row.update(row_scores)
        for row, old in zip(population, olds):
            row.update(old or {})
        results_file.append([row for row, old in zip(population, olds) if old is None])
    return rows


def ray_training(parser, args):
    """--ray: join the cluster (Ray imported only then). One line and exit status 2 if it cannot be reached or has
    no worker that fits, 1 if a worker cannot load the dataset or training there fails."""
    try:
        import cluster
        training = cluster.connect(args.ray, local_training.train_networks, args,
                                   fail=lambda message: parser.fail(1, message))
    except cluster.ClusterError as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        parser.fail(stopping.exit_status(), 'nothing was written', kind='interrupted')
    print(training.description, flush=True)
    return training


def table_training(parser, args):
    """--table FILE: the benchmark table in FILE answers this run's evaluations. One line and exit status 2 if it
    cannot."""
    try:
        return table.TableTraining(table.load(args.table), args)
    except ValueError as error:
        parser.error(f'--table: {error}')


def run_constants(args, training):
    """What decides the numbers besides the settings, saved in the configuration: the searches' constants, and a
    table's hash, answer rule and path from the results file's folder (its `table` setting is its resolved path)."""
    relative = args.table and os.path.relpath(args.table, os.path.dirname(os.path.realpath(args.output)))
    return {**searches.fixed_settings(args.method),
            **({'table_sha256': training.table.sha256, 'table_answer': training.table.answer_rule,
                'table_relative': relative} if args.table else {})}


def report_files(parser, args):
    """--report FILE [FILE ...] (--across, --against): train nothing. One line and exit status 2 for files that cannot
    be read or compared, 1 for a file of the report that cannot be written (its previous version is kept)."""
    flag = '--against' if args.against else '--report'
    try:
        if args.against:
            comparison.report_against(args.report[0], args.against)
        elif len(args.report) > 1 or args.across:
            comparison.report_across(args.report, args.across)
        else:
            report.report_file(args.report[0])
    except files.WriteError as error:
        parser.fail(1, f'{flag}: {error}; its previous version is kept')
    except ValueError as error:
        parser.error(f'{flag}: {error}')
    except KeyboardInterrupt:
        parser.fail(stopping.exit_status(), f'{flag}: the files it wrote are whole, the others as they were',
                    kind='interrupted')


def main(argv=None, *, splits=None):
    """Run the experiment the flags in `argv` describe (sys.argv's by default); `splits`: train on these instead of
    loading --dataset (bench.py --experiment's synthetic images)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.across and not args.report:
        parser.error(f'--across {args.across} needs --report: it names where a comparison of results files goes')
    if args.against and (not args.report or len(args.report) > 1 or args.across):
        parser.error(f'--against {" ".join(args.against)} needs --report with one file and no --across: it checks that '
                     'run')
    if args.report:
        return report_files(parser, args)
    if args.table is not None:
        args.table = os.path.realpath(args.table)  # saved so, and found from the results file's folder too
    settings = check_arguments(parser, args)
    # on a cluster, from a table, or (None) here: LocalTraining, once the data is loaded
    training = ray_training(parser, args) if args.ray else table_training(parser, args) if args.table else None
    try:
        results_file = results.open_results(args.output, settings, run_constants(args, training),
                                            training.device_name if training else network.device_name(args.device),
                                            fresh=args.fresh)
    except results.ResultsFileError as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        parser.fail(stopping.exit_status(), 'nothing was written', kind='interrupted')
    with results_file:  # locked until the run ends
        print('\n'.join(f'{name:<21} {value}' for name, value in vars(args).items()), flush=True)
        if results_file.recorded:
            print(f'resuming {args.output}: {len(results_file.recorded)} of {settings.total} evaluations are '
                  'recorded', flush=True)
        try:
            if training is None:
                training = local_training.LocalTraining(
                    command_line.load_data(parser, args) if splits is None else splits, args)
            if args.fresh:
                for old, new in results.move_aside(args.output):
                    print(f'moved {old} aside to {new}', flush=True)
            with report.Progress(args, list(results_file.recorded.values())) as progress:
                results_file.on_append = progress.show  # it needs the recorded rows, known once the file is open
                rows = run_searches(training, args, results_file)
                report.print_search_tables(rows, args)
        except (KeyboardInterrupt, files.WriteError) as error:
            end_run(parser, error, results_file, 'run the same command again to resume')
        except (results.ResumeMismatchError, rung_weights.MissingWeightsError, proposals.ProposalsError) as error:
            parser.fail(1, str(error))
        except table.TableError as error:
            parser.error(f'--table: {error}')
        try:
            report.report_results(rows, args, results_file.configuration, args.output)
        except (KeyboardInterrupt, files.WriteError) as error:
            end_run(parser, error, results_file, f'python test.py --report {args.output} writes the summaries and '
                                                 'plots')


def end_run(parser, error, results_file, then):
    """End a run that was stopped (Ctrl-C, SIGTERM, SIGHUP: exit status 128 + the signal) or could not write a file
    (1) with one line: why, how many evaluations are saved, and `then`, what to do."""
    saved = f'{results_file.rows_saved()} of {results_file.settings.total} evaluations are saved in {results_file.path}'
    if isinstance(error, KeyboardInterrupt):  # stopping.Stopped, or a KeyboardInterrupt raised by a library
        parser.fail(stopping.exit_status(), f'{saved}; {then}', kind='interrupted')
    parser.fail(1, f'{error}; {saved}: make room (or restore the permission), then {then}')


if __name__ == '__main__':
    stopping.raise_when_stopped()  # Ctrl-C, SIGTERM and SIGHUP from here on: see main
    main()
    stopping.default_when_stopped()
