"""Transposition (lab 6, seq2seq with attention): held-out melodies to transpose, targets kept by the grader.

A melody is a short run of spelled pitches (music21's names with octave: "F#4", "B-3"), a random
walk on the scale of a key that O'Neill's tunes use most (D, G, A major; E, B, A minor) between
D4 and B5: it starts on a random degree and moves by -3..+3 degrees (steps most often), 4 to 10
notes. Each melody comes with an interval, one of -P5, -P4, -M2, M2, P4, P5 (music21's names:
down a fifth ... up a fifth). Its target is the melody transposed by that interval, note by note,
as music21 spells it (`Pitch(name).transpose(interval).nameWithOctave`): D major up a major second
is E major, so F#4 becomes G#4 and C#5 becomes D#5, never A-flat or E-flat. Lab 6 generates its
training melodies with the same recipe from its own seed, and computes their targets with music21.

The vocabulary is closed: the special tokens, one token per interval, then every pitch of the
six scales in the range and every transposition of those by the six intervals, ordered by
pitch (music21's `ps`) then name. Every melody and every target uses only these tokens.

The targets are a function of the inputs (music21's transposition), so a student could compute
them; holding them out is not about secrecy but about the trust boundary, as for lab 2's XOR: the
token accuracy is computed by the coordinator from the recorded predictions, outside the kernel
that ran the student's code.

Staged layout (data/ is the course's data folder):

    data/transpose/test_inputs.json   {"vocabulary": [token, ...], "intervals": [...],
                                       "examples": [{"interval": "M2", "notes": ["D4", ...]}, ...]}
    data/transpose/README.txt         this description
    data/labels/transpose_test.npy    int64 (sum of (len(notes) + 1),) held out: for each example in
                                      order, the vocabulary indices of its transposed notes, then of
                                      "<eos>"; a prediction is laid out the same way (one token per
                                      input note, then the end token), which the inputs alone fix

Deterministic: numpy's PCG64 with a fixed seed, so every machine stages the same files.
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np

from .dataset import LABELS, Dataset, StageContext

KEY = "transpose"
KEYS = ("D", "G", "A", "e", "b", "a")  # music21 key names: upper case major, lower case minor
INTERVALS = ("-P5", "-P4", "-M2", "M2", "P4", "P5")
LOW, HIGH = "D4", "B5"
STEPS = (-3, -2, -1, -1, 0, 1, 1, 2, 3)  # scale degrees from one note to the next
MIN_NOTES, MAX_NOTES = 4, 10
SPECIALS = ("<pad>", "<bos>", "<eos>")
N_TEST = 300
SEED = 20241206


@cache
def scale(key_name: str) -> tuple[str, ...]:
    """The pitches of key_name's scale from LOW to HIGH, as music21 names them."""
    from music21 import key

    return tuple(p.nameWithOctave for p in key.Key(key_name).getScale().getPitches(LOW, HIGH))


@cache
def transposed(name: str, interval: str) -> str:
    """music21's spelling of pitch `name` transposed by `interval` ("F#4", "M2" -> "G#4")."""
    from music21 import pitch

    return pitch.Pitch(name).transpose(interval).nameWithOctave


def vocabulary() -> list[str]:
    """Every token: SPECIALS, "<interval>" for each interval, then the pitches by (ps, name)."""
    from music21 import pitch

    names = {n for k in KEYS for n in scale(k)}
    names |= {transposed(n, interval) for n in names for interval in INTERVALS}
    pitches = sorted(names, key=lambda n: (pitch.Pitch(n).ps, n))
    return [*SPECIALS, *(f"<{interval}>" for interval in INTERVALS), *pitches]


def melody(rng: np.random.Generator) -> tuple[str, list[str]]:
    """(interval, notes): one random walk on a random key's scale, with a random interval."""
    notes_of_scale = scale(KEYS[rng.integers(len(KEYS))])
    interval = INTERVALS[rng.integers(len(INTERVALS))]
    degree = int(rng.integers(len(notes_of_scale)))
    notes = []
    for _ in range(int(rng.integers(MIN_NOTES, MAX_NOTES + 1))):
        notes.append(notes_of_scale[degree])
        degree = min(max(degree + STEPS[rng.integers(len(STEPS))], 0), len(notes_of_scale) - 1)
    return interval, notes


def build(n: int = N_TEST, seed: int = SEED) -> tuple[dict, np.ndarray]:
    """(the public inputs document, the held-out labels int64 (sum of (len(notes) + 1),))."""
    rng = np.random.default_rng(seed)
    tokens = vocabulary()
    index = {t: i for i, t in enumerate(tokens)}
    examples, labels = [], []
    for _ in range(n):
        interval, notes = melody(rng)
        examples.append({"interval": interval, "notes": notes})
        labels.extend([index[transposed(note, interval)] for note in notes] + [index["<eos>"]])
    document = {"vocabulary": tokens, "intervals": list(INTERVALS), "examples": examples}
    return document, np.array(labels, dtype=np.int64)


def stage(context: StageContext) -> str:
    document, labels = build()
    folder = context.staging / KEY
    folder.mkdir(parents=True)
    (context.staging / LABELS).mkdir(exist_ok=True)
    (folder / "test_inputs.json").write_text(json.dumps(document, indent=1) + "\n")
    np.save(context.staging / LABELS / f"{KEY}_test.npy", labels, allow_pickle=False)
    (folder / "README.txt").write_text(__doc__.split("Staged layout")[0].strip() + "\n")
    return (
        f"generated: {N_TEST} melodies in {len(KEYS)} keys, {len(INTERVALS)} intervals, seed {SEED}, "
        "music21's transposition"
    )


DATASET = Dataset(
    KEY, "Transposition: short melodies and an interval, target = music21's transposition (lab 6's held-out set)", stage
)
