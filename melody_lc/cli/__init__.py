"""The ``melody-lc`` command: thin subcommands over the library.

Each subcommand module has ``register(subparsers)``; heavy imports (torch, symusic, music21,
rtmidi, textual) happen inside the functions that run a command, so ``melody-lc --help`` is instant.
Errors a user can cause end as one line on stderr and exit code 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import sys

from melody_lc import __version__
from melody_lc.errors import UserError


class CLIError(UserError):
    """A user error the CLI itself finds (a missing file, options that contradict)."""


class _Parser(argparse.ArgumentParser):
    """A bad command line is one line too, as any other bad input (the usage is in --help); the
    subcommands' parsers are of this class as well."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from melody_lc.cli import audio, chain, constrain, data, image, live, model, rules, train

    parser = _Parser(
        prog="melody-lc",
        description="Steer an unconditional melody VAE with rules (Latent Constraints, Engel et al. 2018).",
    )
    parser.add_argument("--version", action="version", version=f"melody-lc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data.register(sub)
    train.register(sub)
    model.register(sub)
    rules.register(sub)
    constrain.register(sub)
    live.register(sub)
    chain.register(sub)
    image.register(sub)
    audio.register(sub)
    return parser


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops as cleanly as Ctrl-C


def main(argv: list[str] | None = None) -> int:
    import signal

    parser = build_parser()
    args = parser.parse_args(argv)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\nmelody-lc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `melody-lc plugins | head`: the reader has gone; nothing to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except UserError as e:
        print(f"melody-lc: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system refused (a full disk, a name that is a folder): the user's to fix
        if e.filename is None:
            raise
        where = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
        print(f"melody-lc: error: {where}: {e.strerror}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # python -m melody_lc.cli
    sys.exit(main())
