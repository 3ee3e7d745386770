"""Simulation: the statistics behave as advertised over many synthetic runs with a known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import degradation_table, find_knee, wilson_interval

USERS = (2.0, 8.0, 16.0, 32.0)


def simulate(rng: np.random.Generator, accuracies, *, n_samples: int = 300):
    """Every sample answered once per level; a sample's difficulty is shared across levels (realistic pairing)."""
    levels = len(accuracies)
    easy = rng.random(n_samples)
    correct = np.concatenate([easy < a for a in accuracies])
    flip = rng.random(correct.size) < 0.02  # a little per-request noise on top of difficulty
    correct ^= flip
    joined = pd.DataFrame(
        {
            "level": np.repeat(np.arange(levels), n_samples),
            "sample_id": np.tile(np.arange(n_samples), levels).astype(str),
            "t_sent": np.arange(levels * n_samples, dtype=float),
            "ok": True,
            "has_truth": True,
            "correct": correct,
            "y_pred": np.where(correct, "1", "0"),
        }
    )
    n_correct = correct.reshape(levels, n_samples).sum(axis=1)
    table = pd.DataFrame(
        {
            "level": np.arange(levels),
            "users": USERS[:levels],
            "n_correct": n_correct,
            "n_scored": n_samples,
            "n_truth": n_samples,
        }
    )
    return joined, table


def test_no_level_flagged_without_degradation_in_95_percent_of_runs():
    rng = np.random.default_rng(11)
    clean = 0
    runs = 1000
    for _ in range(runs):
        joined, table = simulate(rng, [0.9] * 4)
        degradation = degradation_table(joined, table)
        clean += not degradation["significantly_worse"].any()
    assert clean / runs >= 0.95


def test_knee_found_at_the_true_step():
    rng = np.random.default_rng(12)
    hits = 0
    runs = 200
    for _ in range(runs):
        joined, table = simulate(rng, [0.92, 0.92, 0.92, 0.80])
        knee = find_knee(table, degradation=degradation_table(joined, table))
        hits += knee is not None and knee.level == 2 and knee.first_bad_level == 3
    assert hits / runs >= 0.95


def test_wilson_covers_true_level_accuracy_from_records():
    rng = np.random.default_rng(13)
    truth = np.array([0.97, 0.9, 0.75])
    covered = np.zeros(len(truth))
    runs = 1000
    for _ in range(runs):
        correct = rng.random((len(truth), 200)) < truth[:, None]
        low, high = wilson_interval(correct.sum(axis=1), 200)
        covered += (low <= truth) & (truth <= high)
    assert (covered / runs >= 0.94).all()
