"""The methods compared across tasks (several finished results files of the same methods and budget): per task the
mean best validation loss after each checkpoint with a bootstrap interval and the normalised regret; over all
(task, repetition) pairs each method's mean rank, the Friedman test and a critical-difference diagram; written beside
the first file as NAME.across.json, NAME.across.md, NAME.ranks.png and NAME.critical-difference.png. Also a run on a
benchmark table checked against real training (NAME.against.md).
"""
import contextlib
import io
import itertools
import json
import math
import os
import warnings

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

import files
import report
import results
import searches
import table

CONFIDENCE = 0.95  # of the bootstrap intervals
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # the intervals are the same every time the report is made
FIGURE_INCHES = {'ranks': (8, 5), 'critical-difference': (8, 4)}
FEWEST_PAIRS = 5  # autorank's fewest (task, repetition) pairs
# The fewest repetitions of each of two samples with which the two-sided Mann-Whitney test can reach
# report.SIGNIFICANCE: its smallest p-value, 2 / C(2n, n), is below it (4 at 0.05)
FEWEST_REPETITIONS = next(count for count in itertools.count(2)
                          if 2 / math.comb(2 * count, count) < report.SIGNIFICANCE)
# What a run on a table and the real training it is checked against must share (the first difference is named)
ALIKE = (*table.SHARED_SETTINGS, 'seed', 'evaluations', 'init_points')


class Task:
    """One results file as a task: its name, settings, rows, and the loss its regret is measured from (`best`: the
    lowest loss of the table it was answered from, else the lowest its methods found; with a word on where it comes
    from) and against (`typical`, a random point's median loss), both among networks trained
    the full epochs; each method's best losses after each number of evaluations, worked out once."""

    def __init__(self, name, settings, rows, *, table_best=None):
        self.name, self.settings, self.rows = name, settings, rows
        finite = report.finite_losses(report.full_rows(self.rows, self.settings.epochs))
        if table_best is not None:
            self.best, self.best_from = table_best, "the table's lowest loss"
        else:
            self.best, self.best_from = min(finite, default=math.nan), 'the lowest loss any method found'
        random_losses = [row['val_loss'] for row in self.rows if row['method'] == 'random']
        self.typical = float(np.median([searches.finite_or_inf(loss) for loss in random_losses])) \
            if random_losses else math.nan
        epochs, evaluations = self.settings.epochs, self.settings.evaluations
        self.best_losses = {method: report.best_losses_at(self.rows, method, range(epochs, (evaluations + 1) * epochs,
                                                                                   epochs), epochs)
                            for method in self.settings.method}

    def best_by_repetition(self, method, evaluations):
        """{repetition: the search's best validation loss (inf if all diverged) within `evaluations` evaluations'
        model-epochs (Hyperband's too, among its networks trained the full epochs)}, of the repetitions that made
        them."""
        return self.best_losses[method][evaluations * self.settings.epochs]

    def regret(self, loss):
        """(loss - best) / (typical - best): 0 at the task's best, 1 at a random point's median loss."""
        return (loss - self.best) / (self.typical - self.best)


def tasks_of(paths):
    """The Task of each results file, named after the file (by its path where two files share a name); ValueError
    (one line) for a file named twice, under any spelling or link, or that cannot be read."""
    seen = {}
    for path in paths:
        same = os.path.realpath(path)
        with contextlib.suppress(OSError):
            same = os.stat(path).st_dev, os.stat(path).st_ino  # a hard link too
        if same in seen:
            raise ValueError(f'{seen[same]} and {path} are the same file: each task once')
        seen[same] = path
    names = [os.path.basename(files.path_beside(path, '')) for path in paths]
    runs = [results.load_run(path) for path in paths]
    for run in runs:
        if not run.recorded:
            raise ValueError(f'{run.path} records no evaluation yet')
    return [Task(name if names.count(name) == 1 else run.path, run.settings, run.rows,
                 table_best=table.lowest_loss_of(run)) for run, name in zip(runs, names)]


def check_alike(tasks):
    """ValueError (one line) naming the first difference in methods or budget between the tasks' files. The budget is
    counted in evaluations: each task trains its networks its own epochs (Hyperband gets that many model-epochs)."""
    first = tasks[0]
    for task in tasks[1:]:
        for name in ('method', 'evaluations', 'repetitions'):
            mine, theirs = getattr(first.settings, name), getattr(task.settings, name)
            if list(mine) != list(theirs) if name == 'method' else mine != theirs:
                raise ValueError(f'{task.name} has {name} {theirs!r}, {first.name} {mine!r}: a comparison across '
                                 'files needs the same methods and budget in each')
    if not all(math.isfinite(task.typical) for task in tasks):
        raise ValueError(f'{next(task.name for task in tasks if not math.isfinite(task.typical))} has no finite '
                         "random-search loss: normalised regret needs method random among the methods")


def bootstrap_interval(values):
    """The CONFIDENCE percentile bootstrap interval of the mean of finite values, seeded."""
    if len(values) < 2 or len(set(values)) < 2:
        return (values[0], values[0]) if values else (math.nan, math.nan)
    result = stats.bootstrap((values,), np.mean, confidence_level=CONFIDENCE, n_resamples=BOOTSTRAP_RESAMPLES,
                             method='percentile', rng=np.random.default_rng(BOOTSTRAP_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def rank_blocks(tasks, methods, evaluations):
    """The best losses after `evaluations` as blocks: one row per (task, repetition) pair that every method reached,
    one column per method; and the pairs."""
    blocks, pairs = [], []
    for task in tasks:
        by_method = [task.best_by_repetition(method, evaluations) for method in methods]
        for repetition in sorted(set.intersection(*(set(best) for best in by_method))):
            blocks.append([best[repetition] for best in by_method])
            pairs.append((task.name, repetition))
    return np.array(blocks, dtype=float).reshape(len(blocks), len(methods)), pairs


def mean_ranks(blocks):
    """Each method's mean rank over the blocks, 1 the lowest loss (ties share their mean rank, a diverged best is
    last)."""
    return stats.rankdata(blocks, axis=1).mean(axis=0) if len(blocks) else np.full(blocks.shape[1], math.nan)


def friedman(blocks):
    """The Friedman test over the methods (columns), blocks the (task, repetition) pairs: (statistic, p-value), NaN
    where it needs more (three methods and two blocks)."""
    if blocks.shape[1] < 3 or len(blocks) < 2:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # all ties in a block
        result = stats.friedmanchisquare(*blocks.T)
    return float(result.statistic), float(result.pvalue)


def comparison(tasks, methods, checkpoints):
    """Everything the report across tasks holds, as JSON-ready data (NaN where there is no figure)."""
    per_task = {}
    for task in tasks:
        per_method = {}
        for method in methods:
            per_method[method] = {}
            for count in checkpoints:
                found = list(task.best_by_repetition(method, count).values())
                losses = [loss for loss in found if math.isfinite(loss)]  # a search whose every network diverged:
                per_method[method][str(count)] = dict(  # counted apart (it ranks last)
                    repetitions=len(found), diverged=len(found) - len(losses),
                    mean=float(np.mean(losses)) if losses else math.nan, interval=bootstrap_interval(losses),
                    mean_regret=float(np.mean([task.regret(loss) for loss in losses])) if losses else math.nan)
        per_task[task.name] = dict(best=task.best, best_from=task.best_from, typical_random_loss=task.typical,
                                   methods=per_method)
    ranks = {}
    for count in checkpoints:
        blocks, pairs = rank_blocks(tasks, methods, count)
        statistic, p_value = friedman(blocks)
        ranks[str(count)] = dict(blocks=len(pairs), mean_rank=dict(zip(methods, map(float, mean_ranks(blocks)))),
                                 friedman_statistic=statistic, friedman_p_value=p_value)
    return dict(tasks=per_task, ranks=ranks, confidence=CONFIDENCE, bootstrap_resamples=BOOTSTRAP_RESAMPLES)


def tables(data, methods, checkpoints):
    """The report as tables: per task the mean best loss with its interval and the mean normalised regret, then
    the mean ranks with the Friedman test."""
    result = []
    for name, task in data['tasks'].items():
        result.append(report.Table(
            f'{name}: mean best validation loss after this many evaluations [{CONFIDENCE:.0%} bootstrap interval '
            'over the repetitions]', [('Method', '{}')] + [(f'After {count}', '{}') for count in checkpoints],
            [(method, *(f'{by[str(count)]["mean"]:.4f} [{by[str(count)]["interval"][0]:.4f}, '
                        f'{by[str(count)]["interval"][1]:.4f}]' for count in checkpoints))
             for method, by in task['methods'].items()]))
        result.append(report.Table(
            f'{name}: mean normalised regret, (best loss found - {task["best_from"]}, {task["best"]:.4f}) / '
            f'(median random-search loss {task["typical_random_loss"]:.4f} - the same)',
            [('Method', '{}')] + [(f'After {count}', '{:.3f}') for count in checkpoints],
            [(method, *(by[str(count)]['mean_regret'] for count in checkpoints))
             for method, by in task['methods'].items()]))
    ranks = data['ranks']
    result.append(report.Table(
        'Mean rank over every (task, repetition) pair (1: the lowest best loss), and the Friedman test over the '
        'methods', [('After', '{:d}'), ('Pairs', '{:d}'), *[(method, '{:.2f}') for method in methods],
                    ('Friedman chi2', '{:.1f}'), ('p-value', '{:.2g}')],
        [(count, ranks[str(count)]['blocks'], *(ranks[str(count)]['mean_rank'][method] for method in methods),
          ranks[str(count)]['friedman_statistic'], ranks[str(count)]['friedman_p_value']) for count in checkpoints]))
    return result


def plot_ranks(data, methods, checkpoints, path):
    """Mean rank against evaluations, one line per method, all tasks together."""
    figure = Figure(figsize=FIGURE_INCHES['ranks'], dpi=report.DPI)
    axes = figure.subplots()
    for method in methods:
        axes.plot(checkpoints, [data['ranks'][str(count)]['mean_rank'][method] for count in checkpoints],
                  marker='o', label=method)
    axes.set(xlabel='evaluations', ylabel='mean rank (1: the lowest best loss)', xscale='log',
             title=f'Mean rank over {data["ranks"][str(checkpoints[-1])]["blocks"]} (task, repetition) pairs: '
                   f'{", ".join(data["tasks"])}')
    axes.invert_yaxis()
    axes.legend(fontsize='small')
    report.save_figure(figure, path)


def plot_critical_difference(tasks, methods, evaluations, path):
    """The critical-difference diagram (autorank: Friedman, then Nemenyi's post-hoc test) of the best losses after
    `evaluations`, over every (task, repetition) pair; methods joined by a bar do not differ significantly."""
    import pandas  # autorank's input, and it imports seconds' worth: only here
    from autorank import autorank, plot_stats
    blocks, _ = rank_blocks(tasks, methods, evaluations)
    finite = blocks[np.isfinite(blocks)]
    worst = (finite.max() if finite.size else 0.0) + 1.0  # a diverged best ranks last, as a finite loss
    data = pandas.DataFrame(np.where(np.isfinite(blocks), blocks, worst), columns=methods)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # it prints what it forces
        warnings.simplefilter('ignore')
        result = autorank(data, alpha=0.05, order='ascending', force_mode='nonparametric', verbose=False)
    figure = Figure(figsize=FIGURE_INCHES['critical-difference'], dpi=report.DPI)
    axes = figure.subplots()
    plot_stats(result, allow_insignificant=True, ax=axes)
    axes.set_title(f'After {evaluations} evaluations: mean ranks over {len(blocks)} pairs '
                   f'(Friedman, then Nemenyi; critical difference {result.cd:.2f})', fontsize='small')
    report.save_figure(figure, path)


def report_across(paths, output=None):
    """--report FILE FILE ... (--across NAME.csv): print the comparison of the methods across the tasks of these
    results files (or one) and write its files beside `output` (None: the first file); ValueError (one line) if a file
    cannot be read or the tasks are not alike, files.WriteError if a file cannot be written."""
    tasks = tasks_of(paths)
    output = output or paths[0]
    results.check_path(output, fresh=False, gzipped=True)
    check_alike(tasks)
    settings = tasks[0].settings
    methods = list(settings.method)
    checkpoints = report.checkpoints(settings.evaluations)
    data = comparison(tasks, methods, checkpoints)
    result_tables = tables(data, methods, checkpoints)
    for result_table in result_tables:
        report.print_table(result_table)
    paths = {'across.json': files.path_beside(output, '.across.json'),
             'across.md': files.path_beside(output, '.across.md'),
             **{name: files.path_beside(output, f'.{name}.png') for name in FIGURE_INCHES}}
    text = json.dumps(report.without_nan(data), indent=1) + '\n'
    files.write_whole(paths['across.json'], lambda file: file.write(text))
    markdown = '\n'.join(line for result_table in result_tables
                         for line in [*report.format_table(result_table, markdown=True), ''])
    files.write_whole(paths['across.md'], lambda file: file.write(markdown))
    plot_ranks(data, methods, checkpoints, paths['ranks'])
    if len(methods) < 3 or data['ranks'][str(checkpoints[-1])]['blocks'] < FEWEST_PAIRS:
        del paths['critical-difference']  # Nemenyi's test compares three methods or more, autorank five pairs
        print(f'\nno critical-difference diagram: it needs three methods or more and {FEWEST_PAIRS} (task, '
              'repetition) pairs', flush=True)
    else:
        plot_critical_difference(tasks, methods, checkpoints[-1], paths['critical-difference'])
    print(f'\nwritten: {", ".join(paths.values())}', flush=True)


def check_like_with_like(table_task, real_tasks):
    """ValueError (one line) naming the first setting (ALIKE) in which a real run differs from the run on a table,
    the first method a real run has that the run on the table has not, or the first method two real runs share."""
    methods = {}
    for real in real_tasks:
        for name in ALIKE:
            mine, theirs = (list(value) if isinstance(value, tuple) else value
                            for value in (getattr(table_task.settings, name), getattr(real.settings, name)))
            if mine != theirs:
                raise ValueError(f'{real.name} has {name} {theirs!r}, {table_task.name} {mine!r}: a check against '
                                 'real training compares runs of the same settings')
        for method in real.settings.method:
            if method not in table_task.settings.method:
                raise ValueError(f'{real.name} ran {method}, which {table_task.name} did not: a check against real '
                                 'training compares the methods both ran')
            if method in methods:
                raise ValueError(f'{methods[method]} and {real.name} both ran {method}: name each method\'s real '
                                 'training once')
            methods[method] = real.name


def against(table_task, real_tasks):
    """A run on a table beside the real runs of the same searches (of the same settings, ALIKE, their methods apart),
    after each checkpoint (report.checkpoints) of the budget: per method of the real runs, over the repetitions both
    finished, the mean of the best loss in each with its bootstrap interval and its standard deviation, the two-sided
    Mann-Whitney test of the two samples (they differ beyond the training noise where p < report.SIGNIFICANCE; too
    few repetitions below FEWEST_REPETITIONS, where it cannot), and each mean's rank among the methods. Then, after
    the full budget, over the methods: Spearman's correlation between the two columns of means (NaN below three
    methods), the pooled bias (the table's mean minus real training's, averaged over the methods) and the spread
    ratio (the table's pooled standard deviation over real training's: the root of the mean variance of each).
    ValueError (one line) if the runs are not alike or share no finished repetition."""
    check_like_with_like(table_task, real_tasks)
    rows = []
    for evaluations in report.checkpoints(table_task.settings.evaluations):
        at_checkpoint = []
        for real_task, method in ((real, method) for real in real_tasks for method in real.settings.method):
            table_best, real_best = (task.best_by_repetition(method, evaluations) for task in (table_task, real_task))
            both = sorted(set(table_best) & set(real_best))
            if both:
                samples = [[best[repetition] for repetition in both] for best in (table_best, real_best)]
                p_value = float(stats.mannwhitneyu(*samples).pvalue) if len(both) > 1 else None
                (table_mean, table_std), (real_mean, real_std) = map(finite_mean_and_std, samples)
                at_checkpoint.append(dict(
                    method=method, after=evaluations, repetitions=len(both), table_mean=table_mean,
                    table_interval=bootstrap_interval(finite(samples[0])), real_mean=real_mean,
                    real_interval=bootstrap_interval(finite(samples[1])), table_std=table_std, real_std=real_std,
                    p_value=p_value, verdict='too few repetitions' if len(both) < FEWEST_REPETITIONS else
                    'differ' if p_value < report.SIGNIFICANCE else 'agree'))
        if at_checkpoint:
            table_ranks, real_ranks = (stats.rankdata([row[column] for row in at_checkpoint])
                                       for column in ('table_mean', 'real_mean'))
            for row, table_rank, real_rank in zip(at_checkpoint, table_ranks, real_ranks):
                row.update(table_rank=float(table_rank), real_rank=float(real_rank), verdict=row.pop('verdict'))
        rows.extend(at_checkpoint)
    budget = [row for row in rows if row['after'] == table_task.settings.evaluations]
    if not budget:
        raise ValueError(f'{table_task.name} and {", ".join(task.name for task in real_tasks)} share no finished '
                         'repetition')
    spearman = (float(stats.spearmanr([row['table_rank'] for row in budget],
                                      [row['real_rank'] for row in budget]).statistic)
                if len(budget) > 2 else math.nan)
    bias = float(np.mean([row['table_mean'] - row['real_mean'] for row in budget]))
    spread_ratio = math.sqrt(np.mean([row['table_std'] ** 2 for row in budget])
                             / np.mean([row['real_std'] ** 2 for row in budget]))
    return rows, dict(spearman=spearman, bias=bias, spread_ratio=spread_ratio)


def finite(values):
    """The finite values, in order."""
    return [value for value in values if math.isfinite(value)]


def finite_mean_and_std(values):
    """The mean (NaN if none) and sample standard deviation (NaN below two) of the finite values."""
    kept = finite(values)
    return float(np.mean(kept)) if kept else math.nan, float(np.std(kept, ddof=1)) if len(kept) > 1 else math.nan


def report_against(table_path, real_paths):
    """--report FILE --against REAL.csv [REAL.csv ...]: print the check of a run on a table against real training of
    the same searches (against()) and write it beside it as FILE-NAME.against.md; ValueError (one line) if the files
    cannot be read or compared, files.WriteError if it cannot be written."""
    table_task, *real_tasks = tasks_of([table_path, *real_paths])
    if table_task.settings.table is None or any(task.settings.table is not None for task in real_tasks):
        raise ValueError(f'{table_path} must be a run on a table and {", ".join(real_paths)} runs without')
    results.check_path(table_path, fresh=False, gzipped=True)
    rows, overall = against(table_task, real_tasks)
    real_name = ' and '.join(task.name for task in real_tasks)
    side_by_side = report.Table(
        f'{table_task.name} (on a table) against {real_name} (real training): best validation loss after this many '
        f'evaluations, mean [{CONFIDENCE:.0%} bootstrap interval] and standard deviation over the repetitions both '
        'finished; '
        f'"differ": the two samples differ beyond the training noise (Mann-Whitney p < {report.SIGNIFICANCE})',
        [('Method', '{}'), ('After', '{:d}'), ('Repetitions', '{:d}'), ('Table', '{}'), ('Real', '{}'),
         ('Table std', '{:.4f}'), ('Real std', '{:.4f}'), ('p-value', '{:.2g}'), ('Table rank', '{:g}'),
         ('Real rank', '{:g}'), ('Verdict', '{}')],
        [(row['method'], row['after'], row['repetitions'],
          *(f'{row[f"{side}_mean"]:.4f} [{row[f"{side}_interval"][0]:.4f}, {row[f"{side}_interval"][1]:.4f}]'
            for side in ('table', 'real')),
          row['table_std'], row['real_std'], row['p_value'], row['table_rank'], row['real_rank'], row['verdict'])
         for row in rows])
    report.print_table(side_by_side)
    spearman = overall['spearman']
    lines = [f'Over the methods, after the budget of {table_task.settings.evaluations} evaluations:',
             f"Spearman's correlation between the methods' means: {spearman:.2f}" if math.isfinite(spearman)
             else "Spearman's correlation needs three methods or more",
             f"Pooled bias (the table's mean minus real training's, averaged over the methods): {overall['bias']:+.4f}",
             "Spread ratio (the table's pooled standard deviation over real training's): "
             f"{overall['spread_ratio']:.2f}"]
    print('\n' + '\n'.join(lines), flush=True)
    path = files.path_beside(table_path, '.against.md')
    text = "\n".join([*report.format_table(side_by_side, markdown=True), '', lines[0], '',
                      *(f'- {line}' for line in lines[1:]), ''])
    files.write_whole(path, lambda file: file.write(text))
    print(f'\nwritten: {path}', flush=True)
