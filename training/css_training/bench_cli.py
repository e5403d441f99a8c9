"""``css-bench``: benchmarks of the training module.

css-bench continual --config config/benchmarks/small.yaml [--only lidar] [--docs docs/results.md]
css-bench continual --config config/benchmarks/small.yaml --methods lskd --merge docs/continual_small.json
css-bench paired docs/continual_small.json docs/continual_small_seeds.json --modality lidar --split 12-5 \
    --methods lgkd+m2skd,lgkd
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from css_training.benchmark import (
    BenchmarkConfig,
    compare_paired,
    different_bases,
    merge_results,
    render_markdown,
    render_paired,
    run_continual,
)
from css_training.config import ConfigError
from css_training.data.errors import DataError
from css_training.sim.config import SimConfigError

__all__ = ['get_args_parser', 'main']

START, END = '<!-- continual:{name}:start -->', '<!-- continual:{name}:end -->'


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'takes comma-separated integers, got {text!r}') from None


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='css-bench', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest='command', required=True)
    continual = sub.add_parser('continual', help='class-incremental benchmark on the simulated data')
    continual.add_argument('--config', type=Path, required=True, help='benchmark preset (config/benchmarks/)')
    continual.add_argument('--only', choices=['lidar', 'camera'], help='one modality')
    continual.add_argument('--docs', type=Path, help='markdown file whose continual section is rewritten')
    continual.add_argument('--from-json', type=Path, help='render an earlier run instead of running')
    continual.add_argument(
        '--merge',
        type=Path,
        metavar='JSON',
        help='add the results to an earlier results file (same runs replaced) and render that',
    )
    continual.add_argument('--methods', help="comma-separated subset of the preset's methods")
    continual.add_argument('--seeds', type=_seeds, help="comma-separated seeds to run instead of the preset's")
    continual.add_argument('--splits', help="comma-separated subset of the preset's splits")
    paired = sub.add_parser('paired', help='two methods of earlier results, paired by seed')
    paired.add_argument('results', type=Path, nargs='+', help='results JSON files, merged in order')
    paired.add_argument('--modality', choices=['lidar', 'camera'], required=True)
    paired.add_argument('--split', required=True, help="a split of the results, e.g. '12-5'")
    paired.add_argument('--methods', required=True, help='A,B: the method compared, then the one it is compared to')
    return parser


def write_section(doc: Path, name: str, body: str) -> None:
    """Replaces the text between this preset's markers in ``doc`` (appends the section when absent)."""
    start, end = START.format(name=name), END.format(name=name)
    text = doc.read_text() if doc.exists() else ''
    block = f'{start}\n{body}\n{end}'
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = f'{text.rstrip()}\n\n{block}\n'
    doc.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    args = get_args_parser().parse_args(argv)
    if args.command == 'paired':
        return _paired(args)
    try:
        config = BenchmarkConfig.load(args.config)
        if args.methods:
            config.keep_methods(args.methods.split(','))
        if args.seeds:
            config.seeds = args.seeds
        if args.splits:
            config.keep_splits(args.splits.split(','))
        # Read before the run: --merge may name the file the run itself writes (out/bench/continual_<name>.json).
        earlier = json.loads(args.merge.read_text()) if args.merge and args.merge.exists() else {'runs': []}
        results = json.loads(args.from_json.read_text()) if args.from_json else run_continual(config, args.only)
        if args.merge:
            results = merge_results(earlier, results)
            args.merge.write_text(json.dumps(results, indent=1))
    except (ConfigError, DataError, SimConfigError, OSError, json.JSONDecodeError) as err:
        print(f'css-bench: {err}', file=sys.stderr)
        return 2
    plot_dir = (args.docs.parent if args.docs else Path(config.out_dir)) / 'img'
    body = render_markdown(results, plot_dir)
    print(body)
    if args.docs:
        write_section(args.docs, config.name, body.replace('](', '](img/'))
    return 0


def _paired(args: argparse.Namespace) -> int:
    methods = args.methods.split(',')
    if len(methods) != 2:
        print(f'css-bench: --methods takes two methods, A,B; got {args.methods!r}', file=sys.stderr)
        return 2
    try:
        results: dict = {'runs': []}
        for path in args.results:
            loaded = json.loads(path.read_text())
            if not isinstance(loaded, dict) or not isinstance(loaded.get('runs'), list):
                raise ValueError(f'{path}: not a results file of css-bench continual (no list of runs)')
            if differ := different_bases(results, loaded):
                raise ValueError(
                    f"{path}: the base models of {', '.join(differ)} differ from the earlier files' "
                    '(another machine or config): their runs cannot be paired with those'
                )
            results = merge_results(results, loaded)
        print(render_paired(compare_paired(results, args.modality, args.split, *methods)))
    except (OSError, json.JSONDecodeError, KeyError, ValueError) as err:
        print(f'css-bench: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
