"""Evaluation settings: refinement configurations at rate points, and grids of them.

A *setting* is one refinement configuration at one rate point (one lambda): 'ssl' at 500
iterations, tau_max 1, at the model's lambda x 0.5. ``expand_grid`` makes every combination of
methods x iterations x rate points x tau_max the user asks for, without meaningless repeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..config import (
    METHOD_LABELS,
    TEMPERATURE_METHODS,
    THREE_CLASS_METHODS,
    RefineConfig,
    Target,
    method_label,
    split_label,
)
from ..errors import EvaluationError
from ..refinement.schedules import effective_schedule


@dataclass(frozen=True)
class Setting:
    """One refinement configuration at one rate point.

    ``label`` is the method as the user names it ('ssl3' = three-class SSL). ``lmbda`` is an
    absolute inference lambda, or None for ``lmbda_scale`` x the model's training lambda.
    ``tau_max`` is None for methods without a temperature; ``iterations`` is 0 for 'none'.
    With a ``target`` the rate point is that target instead: the model and lambda are searched
    for each image (targets.encode_to_target).
    """

    label: str
    iterations: int
    lmbda: float | None = None
    lmbda_scale: float = 1.0
    tau_max: float | None = None
    schedule: str = "auto"  # RefineConfig.schedule: auto, paper or budget
    target: Target | None = None

    @property
    def method(self) -> str:
        return split_label(self.label)[0]

    @property
    def three_class(self) -> bool:
        return split_label(self.label)[1]

    def resolved_lmbda(self, model) -> float:
        """The inference lambda of this setting for ``model`` (a LoadedModel)."""
        return model.resolve_lmbda(self.lmbda, self.lmbda_scale)

    def tag(self) -> str:
        """A short name, unique within a grid: 'ssl-it500-tau1-x0.5'."""
        parts = [self.label]
        if self.label != "none":
            parts.append(f"it{self.iterations}")
        if self.tau_max is not None:
            parts.append(f"tau{self.tau_max:g}")
        if self.label != "none" and self.effective_schedule == "budget":
            parts.append("budget")
        parts.append(self.rate_point())
        return "-".join(parts)

    def rate_point(self) -> str:
        """'x0.5' (a multiple of the model's lambda), 'l0.004' (a lambda), 'bpp0.3' (a target)."""
        if self.target is not None:
            return f"{self.target.kind}{self.target.value:g}"
        return f"l{self.lmbda:g}" if self.lmbda is not None else f"x{self.lmbda_scale:g}"

    @property
    def effective_schedule(self) -> str:
        """'paper' or 'budget' (RefineConfig.effective_schedule of this setting; a target's search
        refines with the paper's)."""
        if self.target is not None:
            return "paper"
        return effective_schedule(RefineConfig(iterations=self.iterations, schedule=self.schedule))

    def config(self, base: RefineConfig) -> RefineConfig:
        """``base`` (lr, a, seed, ...) with this setting's method, iterations, tau_max and schedule."""
        changes = dict(method=self.method, iterations=self.iterations, three_class=self.three_class,
                       lmbda=None, schedule=self.schedule)
        if self.tau_max is not None:
            changes["tau_max"] = self.tau_max
        return base.with_(**changes)


def parse_label(label: str, three_class_flag: bool = False) -> str:
    """The method label, with the global --three-class flag applied where it is meaningful."""
    if label not in METHOD_LABELS:
        raise EvaluationError(f"unknown method {label!r}; choose from {', '.join(METHOD_LABELS)}")
    if three_class_flag and label in THREE_CLASS_METHODS:
        return method_label(label, True)
    return label


def expand_grid(methods: Iterable[str], iterations: Iterable[int] = (2000,),
                lmbdas: Iterable[float] = (), lmbda_scales: Iterable[float] = (),
                tau_maxes: Iterable[float] = (1.0,), three_class: bool = False,
                schedules: Iterable[str] = ("auto",), targets: Iterable[Target] = ()) -> list[Setting]:
    """All settings of methods x iterations x rate points x tau_max x schedules, without
    meaningless repeats.

    'none' ignores iterations, tau_max and the schedule; 'ste' and 'uniform' ignore tau_max. Rate
    points are the absolute ``lmbdas`` and the ``lmbda_scales`` (multiples of the model's lambda),
    and the ``targets``; with none of them, the model's own lambda. Schedules that come to the same
    one at an iteration count (auto is budget up to 2000 iterations) are one setting.
    """
    rates = [(float(v), 1.0, None) for v in lmbdas] + [(None, float(s), None) for s in lmbda_scales]
    rates += [(None, 1.0, t) for t in targets]
    if not rates:
        rates = [(None, 1.0, None)]
    iterations, tau_maxes = list(iterations) or [2000], list(tau_maxes) or [1.0]
    schedules = list(schedules) or ["auto"]
    out: list[Setting] = []
    seen = set()
    for raw in methods:
        label = parse_label(raw, three_class)
        for it in ([0] if label == "none" else iterations):
            for tau in (tau_maxes if split_label(label)[0] in TEMPERATURE_METHODS else [None]):
                for schedule in (["auto"] if label == "none" else schedules):
                    for lmbda, scale, target in rates:
                        s = Setting(label, int(it), lmbda, scale, None if tau is None else float(tau), schedule,
                                    target)
                        same = (s.label, s.iterations, s.lmbda, s.lmbda_scale, s.tau_max, s.effective_schedule,
                                s.target)
                        if same not in seen:
                            seen.add(same)
                            out.append(s)
    return out
