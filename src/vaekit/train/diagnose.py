"""What a finished run's figures say went wrong, each as one line with the likely fix.

Short runs fail quietly: a rate near zero (posterior collapse: the decoder ignores z), or a
conditional model whose samples ignore the label they were asked for. The run's log and its
report say so instead of leaving the user to spot it in the pictures.
"""

from __future__ import annotations

from typing import Any

# Below this rate (nats per example) the codes carry next to no information about x.
COLLAPSED_RATE = 0.1
# A conditional model whose samples are judged the asked class at under this many times
# chance (1 / classes) ignores its label.
TIMES_CHANCE = 2.0


def diagnose(figures: dict[str, Any], classes: int = 0) -> list[str]:
    """One line per problem the figures of `vaekit.train.evaluate.evaluate` (and
    `conditional_accuracy`) show; empty when there is none. classes: of a conditional model."""
    found = []
    rate = figures.get("rate")
    if isinstance(rate, float) and rate < COLLAPSED_RATE:
        found.append(
            f"posterior collapse: the rate is {rate:.3f} nats per example, so the decoder "
            "ignores z; train longer (--epochs), warm the rate up (--warmup-epochs 10) or "
            "lower --beta"
        )
    accuracy = figures.get("conditional_accuracy")
    if isinstance(accuracy, float) and classes >= 2 and accuracy < TIMES_CHANCE / classes:
        found.append(
            f"the samples ignore their label: conditional accuracy {accuracy:.2f} is near "
            f"chance (1/{classes} = {1 / classes:.2f}); train longer (--epochs) or use the "
            "class prior (--conditional-prior class-full)"
        )
    return found
