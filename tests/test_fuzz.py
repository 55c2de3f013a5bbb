"""A few hundred mutated bitstreams in CI (scripts/fuzz_bitstreams.py runs 10,000)."""

import collections
import random

import pytest

from .support import load_script

pytestmark = pytest.mark.slow  # real processes and hundreds of mutants


@pytest.fixture(scope="module")
def fuzz():
    return load_script("scripts/fuzz_bitstreams.py")


@pytest.fixture(scope="module")
def corpus(fuzz, tiny_model, tiny_checkpoint):
    seeds = fuzz.make_seeds(tiny_model)
    decode = fuzz.library_decoder(tiny_checkpoint)
    references = [decode(s) for s in seeds]
    return seeds, decode, references


def test_mutants_through_the_library_decode_path(fuzz, corpus):
    seeds, decode, references = corpus
    rng = random.Random(2024)
    counts, bad = collections.Counter(), []
    for _ in range(300):
        name, k, data = fuzz.mutant(rng, seeds)
        outcome, detail = fuzz.classify_library(decode, data, references[k], timeout=60)
        counts[outcome] += 1
        if outcome in fuzz.BAD:
            bad.append(f"{name}: {outcome}: {detail}")
    assert not bad, bad
    assert counts["refused"] > 200 and counts["decoded-identical"] > 0, counts


def test_mutants_through_one_cli_process(fuzz, corpus, tiny_checkpoint, tmp_path):
    """40 random mutants, three forged ones (a huge size, a forged y string, a wrong hash), a file
    whose header says grayscale (a valid file: written as its gray, which the harness expects) and
    a good file, in one ``sgacodec decode`` process: every bad file is named on stderr, no
    traceback, the good ones are written with the right pixels, exit status 1."""
    import dataclasses

    from sgacodec.codec import container as B

    seeds, _, references = corpus
    rng = random.Random(7)
    bs = B.unpack(seeds[2])  # in tiles
    tiles = B.tile_count(2048, 2048, bs.tile)
    forged = [fuzz.raw_pack(bs, height=2048, width=2048, y_strings=[bs.y_strings[0]] * tiles),
              B.pack(dataclasses.replace(bs, y_strings=(bs.y_strings[0][:-4] + b"\x13\x37\x00\x01",)
                                         + bs.y_strings[1:])),
              fuzz.raw_pack(bs, recon_hash=bytes(8)), fuzz.raw_pack(bs, colour=1)]
    items = [fuzz.mutant(rng, seeds) for _ in range(40)] + [("forged", 2, d) for d in forged] \
        + [("seed", 0, seeds[0])]
    outcome, detail = fuzz.check_cli_batch(items, references, tiny_checkpoint, tmp_path, timeout=300)
    assert outcome == "ok", detail
    assert "exit 1" in detail


def test_the_fuzz_script_writes_its_summary_with_provenance(fuzz, tiny_checkpoint, tmp_path):
    out = tmp_path / "fuzz" / "run.txt"
    code = fuzz.main(["-n", "20", "--cli", "0", "--cli-batch", "0", "--checkpoint", str(tiny_checkpoint),
                      "--out", str(out)])
    text = out.read_text()
    assert code == 0, text
    for field in ("command: ", "date: ", "commit: ", "model: checkpoint mbt2018-mean", "seed files: ",
                  "machine: ", "versions: Python", "library decode path:  decoded-identical"):
        assert field in text, field
    counts = dict(part.rsplit(" ", 1) for part in text.split("library decode path:  ")[1].splitlines()[0].split(", "))
    assert sum(map(int, counts.values())) == 20 and counts["crash"] == counts["hang"] == "0"
