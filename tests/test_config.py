"""The choices and defaults in one place: validation, effort presets, schedules, iteration defaults."""

import math

import pytest

from sgacodec import config as cfg
from sgacodec.config import RefineConfig
from sgacodec.refinement.schedules import effective_schedule, iterations_for


@pytest.mark.parametrize("field,value", [("lmbda", math.nan), ("lmbda", math.inf), ("lmbda", -1.0), ("lr", 0.0),
                                         ("tau_end", 1.0), ("lr_boost_max", 0.5), ("schedule", "fast")])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError):
        RefineConfig(**{field: value})


def test_auto_schedule_is_the_budget_one_up_to_the_papers_length():
    assert effective_schedule(RefineConfig(iterations=200)) == "budget"
    assert effective_schedule(RefineConfig(iterations=cfg.PAPER_ITERATIONS)) == "budget"
    assert effective_schedule(RefineConfig(iterations=cfg.PAPER_ITERATIONS + 1)) == "paper"
    assert effective_schedule(RefineConfig(iterations=200, schedule="paper")) == "paper"


def test_iterations_come_from_the_request_the_effort_or_the_device():
    assert iterations_for(7, 1, None, "cpu") == (7, None)  # explicit iterations win
    assert iterations_for(None, 3, None, "cpu") == (cfg.EFFORT_ITERATIONS[3], None)
    assert iterations_for(None, None, None, "cpu") == (cfg.PAPER_ITERATIONS, cfg.CPU_TIME_BUDGET)
    assert iterations_for(None, None, 5.0, "cpu") == (cfg.PAPER_ITERATIONS, 5.0)
    assert iterations_for(None, None, None, "cuda") == (cfg.PAPER_ITERATIONS, None)
    with pytest.raises(ValueError):
        iterations_for(None, 0)
    efforts = [cfg.EFFORT_ITERATIONS[k] for k in sorted(cfg.EFFORT_ITERATIONS)]
    assert efforts == sorted(efforts) and len(set(efforts)) == len(efforts)
