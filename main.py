"""Train a ModernBERT encoder from a YAML recipe.

    composer main.py yamls/pretrain_base.yaml key=value a.b=c ...
    python main.py yamls/demo/pretrain.yaml max_duration=50ba

Loads the recipe, applies the OmegaConf dotlist overrides, validates, builds, fits.
Everything else lives in ``modernbert.train``.
"""

from __future__ import annotations

import errno
import sys

from modernbert.errors import UserError, one_line, peer_lost
from modernbert.train import RecipeError
from modernbert.train.trainer import run


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    try:
        run(argv[0], argv[1:])
    except RecipeError as err:  # a bad recipe: the message names every problem, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:  # a missing tokenizer, dataset or checkpoint: named
        print(f"error: {err}", file=sys.stderr)
        return 2
    except UserError as err:  # bad data, unusable checkpoint, diverged run, folder in use...
        if err.exit_code == 0:  # e.g. rerunning a finished run: say so, succeed
            print(one_line(err), flush=True)
        else:
            print(f"error: {one_line(err)}", file=sys.stderr)
        return err.exit_code
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        print(f"error: no space left on device writing {err.filename or '?'}", file=sys.stderr)
        return 1
    except RuntimeError as err:  # a collective failed because a peer rank died
        message = peer_lost(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
