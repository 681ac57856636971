"""The results read at a glance: the progress of a run, the paper's Tables I and II, statistics of the methods'
best losses, the summary files and the plots. All but the progress is computed from the results rows and the run's
settings alone, so `python test.py --report results.csv` rebuilds it exactly from a results file.
"""
import collections
import itertools
import json
import math
import sys

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from scipy import stats
from tqdm import tqdm

import files
import results
import searches

# The best-so-far losses are reported, and the methods compared, after these many evaluations (and after all)
CHECKPOINTS = (5, 10, 25, 50, 100)
SIGNIFICANCE = 0.05  # of the Mann-Whitney U test
DPI = 100  # the plots' pixels per inch
# files.FIGURES: points per method; convergence-model-epochs: best so far against the compute spent
FIGURE_INCHES = {'convergence': (8, 5), 'convergence-model-epochs': (8, 5), 'points': (5, 4.5),
                 'sobol-vs-random': (10, 5)}
UNIT_SQUARE_POINTS = 25  # the paper's Figs. 1 and 2

Table = collections.namedtuple('Table', 'title columns rows')  # columns: (header, format) pairs; rows: value tuples
NO_FIGURE = 'n<2'  # printed where a table has no figure (None): a deviation or a test needs two repetitions or more


def format_table(table, *, markdown=False):
    """The table as lines: aligned text (text left, numbers right), or Markdown."""
    cells = [[header for header, _ in table.columns]]
    cells += [[NO_FIGURE if value is None else style.format(value) for (_, style), value in zip(table.columns, row)]
              for row in table.rows]
    numeric = [style != '{}' for _, style in table.columns]
    if markdown:
        rule = ['---:' if right else '---' for right in numeric]
        return [f'**{table.title}**', '', *('| ' + ' | '.join(line) + ' |' for line in [cells[0], rule, *cells[1:]])]
    widths = [max(len(line[i]) for line in cells) for i in range(len(table.columns))]
    lines = ['  '.join(cell.rjust(width) if right else cell.ljust(width)
                       for cell, width, right in zip(line, widths, numeric)).rstrip() for line in cells]
    rule = '-' * max(len(line) for line in lines)
    return [table.title, rule, lines[0], rule, *lines[1:], rule]


def print_table(table):
    """Print the table as aligned text, after an empty line."""
    print('\n'.join(['', *format_table(table)]), flush=True)


def rows_by_search(rows):
    """{(method, repetition): that search's rows in iteration order}, by method as they first appear, then
    repetition."""
    grouped = collections.defaultdict(list)
    for row in rows:
        grouped[row['method'], row['repetition']].append(row)
    order = {method: index for index, method in enumerate(dict.fromkeys(key[0] for key in grouped))}
    return {key: sorted(grouped[key], key=lambda row: row['iteration'])
            for key in sorted(grouped, key=lambda key: (order[key[0]], key[1]))}


def method_searches(rows, method):
    """The rows of each repetition of one method's search, by repetition, each in iteration order."""
    return list(rows_by_search([row for row in rows if row['method'] == method]).values())


def finite_losses(rows):
    """The validation losses of the rows whose network did not diverge."""
    return [row['val_loss'] for row in rows if math.isfinite(row['val_loss'])]


def best_row(rows):
    """The evaluation with the lowest finite validation loss (a diverged one only if all diverged)."""
    return min(rows, key=lambda row: searches.finite_or_inf(row['val_loss']))


def mean_std(values, axis=None):
    """Mean and sample standard deviation (n - 1), of all values or along `axis`; the deviation of a single
    value is NaN."""
    values = np.asarray(values, dtype=float)
    mean = values.mean(axis=axis)
    count = values.size if axis is None else values.shape[axis]
    return mean, values.std(axis=axis, ddof=1) if count > 1 else mean * math.nan


def mean_and_deviation(values):
    """(mean, sample standard deviation) of the values as floats for the tables: None where there is no figure (no
    value; a deviation of one value)."""
    mean, std = mean_std(values) if len(values) else (None, None)
    return (None if mean is None else float(mean)), (float(std) if len(values) > 1 else None)


def full_rows(search_rows, epochs):
    """The rows of networks trained the full `epochs` (all but Hyperband's lower rungs)."""
    return [row for row in search_rows if row['epochs'] == epochs]


def search_progress(search_rows, epochs=None):
    """(x, best) after each row of one search, as arrays: x its evaluation count, or with `epochs` the model-epochs
    it has spent; best its lowest validation loss so far (inf until one is finite), with `epochs` among networks
    trained that many epochs. A row costs the epochs its network trained for it: a Hyperband network those added since
    its last rung, a repeated point its evaluation's (it uses up its evaluation)."""
    spent = (np.arange(1, len(search_rows) + 1) if epochs is None
             else np.cumsum([row['epochs'] - row['epochs_before'] for row in search_rows]))
    losses = [row['val_loss'] if epochs is None or row['epochs'] == epochs else math.inf for row in search_rows]
    return spent, np.minimum.accumulate([searches.finite_or_inf(loss) for loss in losses])


def best_losses_at(rows, method, counts, epochs=None):
    """{after: {repetition: its best loss}} for each of the counts: the best validation loss within the first `after`
    evaluations of each repetition of one method's search that has made that many, diverged ones as inf; with
    `epochs`, within its first `after` model-epochs, of each repetition that has spent more than `after` - `epochs` (no
    network more would fit: Hyperband ends a little short of its budget). Each search's progress is worked out once."""
    progress = [(search[0]['repetition'], *search_progress(search, epochs)) for search in method_searches(rows, method)]
    return {after: {repetition: float(best[spent <= after].min(initial=math.inf))
                    for repetition, spent, best in progress if spent[-1] > after - (epochs or 1)}
            for after in counts}


def compared_methods(methods, epochs=None):
    """The methods compared along evaluations (epochs None: all but the multi-fidelity ones, whose evaluations train
    for fewer epochs) or along model-epochs (all)."""
    return [method for method in methods if epochs or not searches.is_multi_fidelity(method)]


def methods_present(rows, methods):
    """The methods, in the given order, that have at least one row."""
    return [method for method in methods if any(row['method'] == method for row in rows)]


def search_table(search_rows, *, init_points, epochs, search_seed):
    """The paper's Table II for one search: every evaluation, a guided search's init points, repeated points and the
    best one (of those trained the full epochs) marked; a Hyperband search's rungs (bracket, configuration, epochs)."""
    method, repetition = search_rows[0]['method'], search_rows[0]['repetition']
    init_points = init_points if searches.is_guided(method) else 0
    best = best_row(full_rows(search_rows, epochs)) if full_rows(search_rows, epochs) else None
    rungs = searches.is_multi_fidelity(method)

    def note(row):
        marks = ['init'] * (row['iteration'] <= init_points) + ['best'] * (row is best)
        marks += [f'repeat of {row["repeat_of"]}'] * (row['repeat_of'] is not None)
        return ' '.join(marks + ['diverged'] * (not math.isfinite(row['val_loss'])))

    columns = [('Iter', '{:d}'), *[(name, '{:d}') for name in ('Bracket', 'Config', 'Epochs')] * rungs,
               ('Loss', '{:.4f}'), ('Learning Rate', '{:.6g}'), ('Weight Decay', '{:.6g}'),
               ('Accuracy Validation', '{:.4f}'), ('Accuracy Test', '{:.4f}'), ('', '{}')]
    return Table(f'Table II: {method}, repetition {repetition} (search seed {search_seed}): {len(search_rows)} '
                 + (f'scorings in rungs, at most {epochs} epochs' if rungs else 'evaluations'
                    + (f', {init_points} init points' if init_points else '') + f', {epochs} epochs per evaluation'),
                 columns,
                 [(row['iteration'], *[row[name] for name in ('bracket', 'configuration', 'epochs')] * rungs,
                   row['val_loss'], row['learning_rate'], row['weight_decay'], row['val_accuracy'],
                   row['test_accuracy'], note(row)) for row in search_rows])


def best_rows(rows, method, epochs):
    """The best evaluation of each repetition of a method's search among its networks trained the full `epochs`
    (a Hyperband search that trained none yet has none)."""
    return [best_row(full_rows(search, epochs)) for search in method_searches(rows, method)
            if full_rows(search, epochs)]


def summary_rows(rows, methods, epochs):
    """Table I's numbers per method, over repetitions of the search's best evaluation (best_rows): (method,
    repetitions, mean and std of the validation loss, of the validation accuracy (%) and of the test accuracy
    (%))."""
    bests = {method: best_rows(rows, method, epochs) for method in methods_present(rows, methods)}
    return [(method, len(best), *mean_and_deviation([row['val_loss'] for row in best]),
             *mean_and_deviation([100 * row['val_accuracy'] for row in best]),
             *mean_and_deviation([100 * row['test_accuracy'] for row in best]))
            for method, best in bests.items() if best]


def summary_table(rows, table_one, epochs):
    """The paper's Table I (summary_rows, table_one), plus the test accuracy of the best configurations; its title
    names the searches of `rows` that trained no network the full epochs yet."""
    columns = [('Method', '{}'), ('Runs', '{:d}'), ('Mean Loss', '{:.4f}'), ('Std Dev', '{:.4f}'),
               ('Mean Accuracy', '{:.4f}%'), ('Std Dev', '{:.4f}%'),
               ('Mean Test Accuracy', '{:.4f}%'), ('Std Dev', '{:.4f}%')]
    unscored = [f'{method} repetition {repetition}' for (method, repetition), search in rows_by_search(rows).items()
                if not full_rows(search, epochs)]
    return Table('Table I: best validation loss of each search and its accuracy, mean and standard deviation over '
                 'repetitions'
                 + (f' ({", ".join(unscored)}: none trained {epochs} epochs yet)' if unscored else ''),
                 columns, table_one)


def mann_whitney(first, second, *, names):
    """The two-sided Mann-Whitney U test of two methods' best losses: U (of `first`), the p-value and a plain
    sentence saying which method has the lower losses, or that the difference is not significant; no U and p-value
    (None) where a method has fewer than two repetitions, which no test can tell apart."""
    counts = f'{len(first)}' if len(first) == len(second) else f'{len(first)} and {len(second)}'
    counts += ' repetition' if counts == '1' else ' repetitions'
    if min(len(first), len(second)) < 2:
        return dict(methods=list(names), u=None, p_value=None, verdict=f'not tested: {counts} (at least 2 each)')
    u, p_value = stats.mannwhitneyu(first, second, alternative='two-sided')
    if not p_value < SIGNIFICANCE:
        verdict = f'no significant difference at {SIGNIFICANCE:.0%} over {counts}'
    else:  # U counts the pairs where `first` is the larger: below half of all pairs, `first` tends lower
        lower, higher = names if u < len(first) * len(second) / 2 else names[::-1]
        verdict = f'{lower} finds lower losses than {higher} (significant at {SIGNIFICANCE:.0%} over {counts})'
    return dict(methods=list(names), u=float(u), p_value=float(p_value), verdict=verdict)


def method_comparisons(rows, methods, evaluations, epochs=None):
    """mann_whitney of the best losses after each of the checkpoints (with `epochs`, in model-epochs: see
    best_losses), for every pair of compared_methods (by pair, then checkpoint) with repetitions that have made that
    many; each with `after`, the checkpoint."""
    present = methods_present(rows, compared_methods(methods, epochs))
    best = {(method, count): list(losses.values()) for method in present
            for count, losses in best_losses_at(rows, method, checkpoints(evaluations, epochs), epochs).items()}
    return [{'after': count, **mann_whitney(best[first, count], best[second, count], names=(first, second))}
            for first, second in itertools.combinations(present, 2) for count in checkpoints(evaluations, epochs)
            if best[first, count] and best[second, count]]


def comparison_table(comparisons, epochs=None):
    """The method_comparisons as a table: methods, checkpoint, U, p-value and the sentence."""
    columns = [('Methods', '{}'), ('After', '{:d}'), ('U', '{:.1f}'), ('p-value', '{:.4f}'), ('Verdict', '{}')]
    return Table("Mann-Whitney U test (two-sided) of the methods' best validation losses so far, after this many "
                 + axis_name(epochs), columns,
                 [(' vs '.join(test['methods']), test['after'], test['u'], test['p_value'], test['verdict'])
                  for test in comparisons])


def checkpoints(evaluations, epochs=None):
    """The evaluation counts after which the best-so-far loss is reported: CHECKPOINTS within the budget, and
    the budget; with `epochs`, the model-epochs they cost (250, 500 and 1,250 for 50 epochs)."""
    return [count * (epochs or 1) for count in sorted({count for count in CHECKPOINTS if count < evaluations}
                                                      | {evaluations})]


def axis_name(epochs=None):
    """What the checkpoints count."""
    return 'model-epochs (networks trained x epochs)' if epochs else 'evaluations'


def best_so_far_curves(rows, method, epochs=None):
    """One row per repetition of one method: its best-so-far loss after each evaluation (with `epochs`: after each
    model-epoch, see search_progress), NaN after its last (a results file that a run is still writing, or a search
    that ended short of its budget) and where every evaluation so far diverged."""
    progress = [search_progress(search, epochs) for search in method_searches(rows, method)]
    matrix = np.full((len(progress), max(int(spent[-1]) for spent, _ in progress)), math.nan)
    for (spent, best), line in zip(progress, matrix):
        last = np.searchsorted(spent, np.arange(1, spent[-1] + 1), side='right') - 1  # the last row within each x
        curve = np.where(last >= 0, best[np.maximum(last, 0)], math.inf)
        line[:len(curve)] = np.where(np.isfinite(curve), curve, math.nan)
    return matrix


def best_so_far_summary(rows, methods, evaluations, epochs=None):
    """{method: {count: (mean, std) of best_losses after `count` evaluations (with `epochs`: model-epochs)}}, of the
    compared_methods: over the repetitions that have made that many, as method_comparisons compares them (None where
    there is no figure: mean_and_deviation)."""
    return {method: {count: mean_and_deviation(list(losses.values())) for count, losses
                     in best_losses_at(rows, method, checkpoints(evaluations, epochs), epochs).items()}
            for method in methods_present(rows, compared_methods(methods, epochs))}


def best_so_far_table(summary, evaluations, epochs=None):
    """best_so_far_summary as a table: per method, the mean and std after each of the checkpoints."""
    counts = checkpoints(evaluations, epochs)
    columns = [('Method', '{}')] + [column for count in counts
                                    for column in [(f'After {count}', '{:.4f}'), ('Std Dev', '{:.4f}')]]
    return Table(f'Mean best validation loss so far, over repetitions, after this many {axis_name(epochs)}', columns,
                 [(method, *(value for count in counts for value in by_count[count]))
                  for method, by_count in summary.items()])


def statistics(rows, settings):
    """Everything the printed tables and summary.json hold, computed once: Table I's rows (summary_rows), each
    repetition's best configuration, and along evaluations (None) and along model-epochs (settings.epochs) the mean
    best losses so far (best_so_far_summary) and the methods' comparisons (method_comparisons)."""
    along = {epochs: (best_so_far_summary(rows, settings.method, settings.evaluations, epochs),
                      method_comparisons(rows, settings.method, settings.evaluations, epochs))
             for epochs in (None, settings.epochs)}
    return dict(table_one=summary_rows(rows, settings.method, settings.epochs),
                best_configurations={method: [{name: row[name] for name in results.COLUMNS if name in row}
                                              for row in best_rows(rows, method, settings.epochs)]
                                     for method in methods_present(rows, settings.method)}, along=along)


def summary(rows, statistics_of_rows, configuration):
    """What summary.json holds: Table I per method, the best configuration of every repetition, the statistics
    (along evaluations and along model-epochs), the configuration, library versions, devices, machines and the
    training wall time (the sum of the rows' seconds)."""
    table_one = {row[0]: dict(zip(('repetitions', 'mean_val_loss', 'std_val_loss', 'mean_val_accuracy_percent',
                                   'std_val_accuracy_percent', 'mean_test_accuracy_percent',
                                   'std_test_accuracy_percent'), row[1:]))
                 for row in statistics_of_rows['table_one']}
    (evaluations, by_evaluations), (_, by_model_epochs) = statistics_of_rows['along'].items()

    def by_checkpoint(curves):
        return {method: {str(count): dict(mean=mean, std=std) for count, (mean, std) in by_count.items()}
                for method, by_count in curves.items()}
    return dict(table_1=table_one, best_configurations=statistics_of_rows['best_configurations'],
                mann_whitney_u=by_evaluations[1], mean_best_so_far=by_checkpoint(by_evaluations[0]),
                mann_whitney_u_by_model_epochs=by_model_epochs[1],
                mean_best_so_far_by_model_epochs=by_checkpoint(by_model_epochs[0]),
                configuration=results.settings_of(configuration), versions=configuration.get('versions'),
                devices=configuration.get('devices', []), machines=configuration.get('machines', []),
                training_wall_seconds=sum(row['seconds'] for row in rows))


def without_nan(value):
    """`value` with every non-finite float made None, for strict JSON."""
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_summaries(summary_data, tables, output):
    """results.summary.json holding summary_data (summary()), and results.summary.md holding `tables` (Table I,
    statistics, every Table II), each written whole (files.WriteError if it cannot be, the previous version kept)."""
    text = json.dumps(without_nan(summary_data), indent=1) + '\n'
    files.write_whole(files.report_paths(output)['summary.json'], lambda file: file.write(text))
    markdown = '\n'.join(line for table in tables for line in [*format_table(table, markdown=True), ''])
    files.write_whole(files.report_paths(output)['summary.md'], lambda file: file.write(markdown))


def save_figure(figure, path):
    """The figure as a PNG file, written whole (files.WriteError if it cannot be, the previous version kept)."""
    files.write_whole(path, lambda file: figure.savefig(file, format='png'), binary=True)


def plot_convergence(rows, args, path, epochs=None):
    """Best-so-far validation loss against evaluation number (with `epochs`: model-epochs spent, every method on one
    axis): mean and a standard-deviation band over repetitions, one line per compared method, the guided searches'
    init points shaded; the y axis spans the means and bands from the first checkpoint (5 evaluations) on."""
    figure = Figure(figsize=FIGURE_INCHES['convergence-model-epochs' if epochs else 'convergence'], dpi=DPI)
    axes = figure.subplots()
    shown = []  # the means and bands from the first checkpoint on
    for method in methods_present(rows, compared_methods(args.method, epochs)):
        curves = best_so_far_curves(rows, method, epochs)
        mean, std = mean_std(curves, axis=0)
        spent = np.arange(1, len(mean) + 1)
        line, = axes.plot(spent, mean, marker=None if epochs else '.', label=f'{method} ({len(curves)} repetitions)')
        axes.fill_between(spent, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        start = min(CHECKPOINTS[0] * (epochs or 1), len(mean)) - 1
        shown += [value for value in [*mean[start:], *(mean - std)[start:], *(mean + std)[start:]]
                  if math.isfinite(value)]
    if any(map(searches.is_guided, args.method)):
        axes.axvspan(0.5, args.init_points * (epochs or 1) + 0.5, color='grey', alpha=0.15,
                     label=f'init points of the guided searches ({args.init_points}, uniform random)')
    axes.set(xlabel='model-epochs spent (networks trained x epochs)' if epochs else 'evaluation',
             ylabel='best validation loss so far' + (f' (of networks trained {epochs} epochs)' if epochs else ''),
             title=f'{args.dataset}: mean ± std over repetitions')
    if shown:  # the first evaluations' wide bands would flatten the curves where the methods are compared
        low, high = min(shown), max(shown)
        margin = 0.1 * (high - low) or 0.1 * abs(high) or 0.1
        axes.set_ylim(low - margin, high + margin)
    axes.legend()
    save_figure(figure, path)


def plot_points(rows, args, path):
    """The evaluated points of each method over the (learning rate, weight decay) box, coloured by validation
    loss (one colour scale), diverged ones as grey crosses, each repetition's best as a red-edged star; of the
    networks trained the full epochs (Hyperband's lower rungs are left out)."""
    rows = full_rows(rows, args.epochs)
    methods = methods_present(rows, args.method)
    width, height = FIGURE_INCHES['points']
    figure = Figure(figsize=(width * len(methods), height), dpi=DPI, layout='constrained')
    losses = finite_losses(rows)
    norm = None
    if losses:  # a log scale if no loss is 0; ranges made wider than one value
        low, high = min(losses), max(losses)
        norm = LogNorm(low, high * 1.001) if low > 0 else Normalize(low, max(high, low + 1e-9))
    for axes, method in zip(np.atleast_1d(figure.subplots(1, len(methods), sharey=True)), methods):
        method_rows = [row for row in rows if row['method'] == method]
        finite = [row for row in method_rows if math.isfinite(row['val_loss'])]
        diverged = [row for row in method_rows if not math.isfinite(row['val_loss'])]
        bests = best_rows(rows, method, args.epochs)
        scatter = axes.scatter([row['learning_rate'] for row in finite], [row['weight_decay'] for row in finite],
                               c=[row['val_loss'] for row in finite], norm=norm, cmap='viridis_r', s=18)
        if diverged:
            axes.scatter([row['learning_rate'] for row in diverged], [row['weight_decay'] for row in diverged],
                         marker='x', color='grey', s=18, label='diverged')
        axes.scatter([row['learning_rate'] for row in bests], [row['weight_decay'] for row in bests], marker='*',
                     s=160, facecolors='none', edgecolors='red', linewidths=1.2, label='best of a repetition')
        axes.set(title=f'{method}: {len(method_rows)} evaluations'
                 + (f' of {args.epochs} epochs' if searches.is_multi_fidelity(method) else ''), xlabel='learning rate',
                 xscale='log' if args.lr_scale == 'log' else 'linear')
        axes.legend(loc='upper right', fontsize='small')
    figure.axes[0].set_ylabel('weight decay')
    if losses:
        figure.colorbar(scatter, ax=figure.axes, label='validation loss')
    save_figure(figure, path)


def plot_unit_square(point_sets, path):
    """The paper's Figs. 1 and 2: {title: [{'x': x, 'y': y}, ...]} side by side in the unit square."""
    figure = Figure(figsize=FIGURE_INCHES['sobol-vs-random'], dpi=DPI, layout='constrained')
    for axes, (title, points) in zip(figure.subplots(1, len(point_sets)), point_sets.items()):
        axes.scatter([point['x'] for point in points], [point['y'] for point in points], s=25)
        axes.set(title=title, xlim=(0, 1), ylim=(0, 1), aspect='equal')
    save_figure(figure, path)


def in_method_order(rows, args):
    """The rows by method (in args.method's order), repetition and iteration: a populations' run and its file
    hold the methods' rows interleaved."""
    return sorted(rows, key=lambda row: (args.method.index(row['method']), row['repetition'], row['iteration']))


def search_tables(rows, args):
    """The paper's Table II of every search in `rows`, in method order."""
    rows = in_method_order(rows, args)
    return [search_table(search, init_points=args.init_points, epochs=args.epochs,
                         search_seed=searches.seed_for(args.seed, repetition))
            for (_, repetition), search in rows_by_search(rows).items()]


def print_search_tables(rows, args):
    """Print search_tables(rows, args) without breaking a progress bar on the terminal."""
    with tqdm.external_write_mode():  # clears a progress bar while the tables are printed
        for table in search_tables(rows, args):
            print_table(table)


def report_results(rows, settings, configuration, output):
    """Print Table I and the statistics below it; write the summaries (with every search's Table II) and the
    plots beside `output`."""
    rows = in_method_order(rows, settings)
    computed = statistics(rows, settings)
    tables = [summary_table(rows, computed['table_one'], settings.epochs)]
    multi_fidelity = any(map(searches.is_multi_fidelity, settings.method))
    for epochs, (best_so_far, comparisons) in computed['along'].items():
        if epochs is None or multi_fidelity:  # along evaluations, and with Hyperband along model-epochs too
            tables.append(best_so_far_table(best_so_far, settings.evaluations, epochs))
            if comparisons:  # two methods or more
                tables.append(comparison_table(comparisons, epochs))
    for table in tables:
        print_table(table)
    write_summaries(summary(rows, computed, configuration), tables + search_tables(rows, settings), output)
    paths = files.report_paths(output)
    plot_convergence(rows, settings, paths['convergence'])
    plot_convergence(rows, settings, paths['convergence-model-epochs'], settings.epochs)
    plot_points(rows, settings, paths['points'])
    unit_square, count = {'x': (0, 1), 'y': (0, 1)}, UNIT_SQUARE_POINTS
    plot_unit_square(
        {f'{count} Sobol points (optunity, as its search draws them)':
            searches.sobol_points(unit_square, evaluations=count, seed=searches.seed_for(settings.seed, 1)),
         f'{count} uniform random points':
            searches.random_points(unit_square, evaluations=count, seed=searches.seed_for(settings.seed, 1))},
        paths['sobol-vs-random'])
    print(f'\nwritten: {", ".join(paths.values())}', flush=True)


def report_file(path):
    """--report FILE: print the tables of results file `path` and write its summaries and plots, with the settings its
    configuration saved (checked as the flags are); nothing is trained. ValueError (one line) if it cannot be read or
    records nothing, files.WriteError if a file cannot be written (its previous version kept)."""
    results.check_path(path, fresh=False, gzipped=True)  # its summaries and plots are written beside it
    run = results.load_run(path)
    if not run.recorded:
        raise ValueError(f'{path}: the file records no evaluation yet')
    print_search_tables(run.rows, run.settings)
    report_results(run.rows, run.settings, run.configuration, path)


def bars_shown(args):
    """Whether progress shows as bars, on a terminal, rather than as printed lines."""
    return not args.quiet and sys.stderr.isatty()


class Progress:
    """The evaluations shown as they are recorded: on a terminal one bar with the count, the methods and
    repetitions of the last population and those methods' best validation losses so far; otherwise one printed
    line each; nothing with --quiet."""

    def __init__(self, args, recorded_rows):
        self.args, self.best = args, {method: math.inf for method in args.method}  # the lowest finite loss so far
        self.note_best(recorded_rows)
        self.rows = {method: searches.search_class(method).rows_per_search(evaluations=args.evaluations,
                                                                           epochs=args.epochs)
                     for method in args.method}  # of each search
        self.bar = tqdm(total=args.repetitions * sum(self.rows.values()), initial=len(recorded_rows),
                        unit='eval', dynamic_ncols=True, disable=not bars_shown(args))

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.bar.close()

    def note_best(self, rows):
        for row in rows:
            if math.isfinite(row['val_loss']) and row['epochs'] == self.args.epochs:
                self.best[row['method']] = min(self.best[row['method']], row['val_loss'])

    def show(self, rows):
        self.note_best(rows)
        methods = [method for method in self.args.method if any(row['method'] == method for row in rows)]
        descriptions = []
        for method in methods:  # a population can hold several methods' evaluations
            repetitions = sorted({row['repetition'] for row in rows if row['method'] == method})
            shown = f' {repetitions[0]}' if len(repetitions) == 1 else f's {repetitions[0]}-{repetitions[-1]}'
            descriptions.append(f'{method} repetition{shown}/{self.args.repetitions}')
        self.bar.set_description(', '.join(descriptions), refresh=False)
        best = ', '.join(f'{method} {self.best[method]:.4f}' for method in methods)
        self.bar.set_postfix_str(f'best validation loss {best}', refresh=False)
        self.bar.update(len(rows))
        if bars_shown(self.args) or self.args.quiet:
            return
        for row in rows:
            how = f'repeat of {row["repeat_of"]}' if row['repeat_of'] else f'{row["seconds"]:.1f} s'
            rung = f' (configuration {row["configuration"]}, {row["epochs"]} epochs)' if row['configuration'] else ''
            print(f'{row["method"]} repetition {row["repetition"]}/{self.args.repetitions} evaluation '
                  f'{row["iteration"]}/{self.rows[row["method"]]}{rung}: lr {row["learning_rate"]:.6g} '
                  f'wd {row["weight_decay"]:.6g} -> validation loss {row["val_loss"]:.4f} '
                  f'accuracy {row["val_accuracy"]:.4f} ({how})', flush=True)
