"""The README and docs/: every relative link leads to a file (and heading) that exists, and the flags they name are
test.py's; the Optuna study in docs/tables.md runs as written."""
import re

import pytest

import test as experiment
from conftest import ROOT

DOCUMENTS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')
FLAG = re.compile(r'(?<![\w-])--[a-z][a-z-]*[a-z]')


def prose(text):
    """The text outside fenced code blocks."""
    return re.sub(r'^```.*?^```', '', text, flags=re.S | re.M)


def anchors(path):
    """The anchors GitHub gives the headings of a Markdown file: lower case, punctuation dropped, spaces as
    hyphens, a repeated one numbered."""
    seen, result = {}, set()
    for heading in re.findall(r'^#+ (.+)$', prose(path.read_text()), flags=re.M):
        slug = re.sub(r'[^\w\- ]', '', heading.strip().lower().replace('`', '')).replace(' ', '-')
        result.add(f'{slug}-{seen[slug]}' if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return result


def help_flags():
    return set(FLAG.findall(experiment.build_parser().format_help()))


@pytest.mark.parametrize('document', DOCUMENTS, ids=lambda path: path.name)
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(document):
    links = [link for link in LINK.findall(prose(document.read_text())) if not re.match(r'[a-z]+:', link)]
    for link in links:
        name, _, anchor = link.partition('#')
        target = (document.parent / name).resolve() if name else document
        assert target.exists(), f'{document.name}: {link} leads to no file'
        if anchor:
            assert anchor in anchors(target), f'{document.name}: {link} names no heading of {target.name}'


def test_the_anchors_are_githubs():
    assert anchors(ROOT / 'docs' / 'authors-setup.md') >= {
        "the-authors-bayesian-optimisation", 'where-this-reproduction-knowingly-differs-from-the-authors-code'}


def test_the_readme_names_only_flags_that_test_py_has():
    readme = (ROOT / 'README.md').read_text()
    commands = re.findall(r'^\S*python test\.py.*$', readme, flags=re.M)
    flags_section = readme[readme.index('## The flags most runs need'):]
    flags_section = flags_section[:flags_section.index('\n## ')]
    named = set(FLAG.findall(flags_section)) | {flag for command in commands for flag in FLAG.findall(command)}
    assert len(named) >= 10 and named <= help_flags(), named - help_flags()


def test_the_flag_reference_lists_every_flag_of_test_py_once():
    reference = (ROOT / 'docs' / 'running.md').read_text()
    listed = re.findall(r'^\| `(--[a-z-]+)[^`]*` \|', reference, flags=re.M)  # a flag table's first column
    assert sorted(listed) == sorted(flag for flag in help_flags() - {'--help'}
                                    if not flag.startswith('--no-'))  # a switch's --no-x is listed with --x


def test_the_optuna_snippet_in_the_tables_document_runs_as_written(monkeypatch):
    text = (ROOT / 'docs' / 'tables.md').read_text()
    snippet = re.search(r'## Any optimiser on a table.*?```python\n(.*?)```', text, flags=re.S).group(1)
    monkeypatch.chdir(ROOT)
    namespace = {}
    exec(compile(snippet, 'docs/tables.md', 'exec'), namespace)
    study, bench = namespace['study'], namespace['bench']
    assert len(study.trials) == 25 and bench.path == 'tables/fashion-mnist.csv'
    best = study.best_trial
    assert study.best_value == bench.evaluate(best.params['learning_rate'], best.params['weight_decay'], 27,
                                               seed=best.number)['val_loss']
    assert bench.lowest_loss() - 0.05 < study.best_value < 0.6  # TPE finds the good corner of a table that runs to 2.3
