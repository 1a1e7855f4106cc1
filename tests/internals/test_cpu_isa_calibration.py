"""The CPU backend's per-family ISA choice (csrc/cpu/common/cpu_isa.h, isa_calibration.h):
CNNKERN_CPU_ISA wins, CNNKERN_ISA_CALIBRATION=0 applies the documented rule, and the
calibration is measured once, cached per CPU model and build, and never trusts a corrupt,
stale or unwritable cache file.

The calibration runs once per process, so its tests run it in fresh Python processes with a
cache directory of their own. On a CPU without AVX-512 no family has two candidates;
CNNKERN_ISA_CALIBRATION=emulated makes avx512_emulated one there (the test vehicle), so these
tests run the same machinery on every CI machine.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

import cnnkern
from cnnkern import tuning

FAMILIES = ("gemm", "winograd", "direct", "depthwise", "pool", "bn_relu")
WITH_AVX512_VARIANT = ("gemm", "direct", "pool")
HAS_AVX512 = {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= tuning.cpu_flags()

pytestmark = pytest.mark.skipif(not {"avx2", "fma"} <= tuning.cpu_flags(),
                                reason="the calibration compares AVX-512 (or its emulation) "
                                       "with AVX2 variants")


def _fresh_report(cache_home):
    """isa_choices() of a new Python process whose cache directory is cache_home."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CNNKERN_CPU_ISA", "CNNKERN_ISA_CALIBRATION")}
    env.update(XDG_CACHE_HOME=str(cache_home), CNNKERN_ISA_CALIBRATION="emulated")
    code = "import json, cnnkern; print(json.dumps(cnnkern.tuning.isa_choices()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def _measured(report):
    return {f: c for f, c in report["families"].items() if c["how"] == "measured"}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("cache")
    return home, _fresh_report(home)


def test_first_use_measures_each_family_with_two_candidates_and_picks_the_faster(first_run):
    _, r = first_run
    measured = _measured(r)
    assert sorted(measured) == sorted(WITH_AVX512_VARIANT)
    wide = "avx512" if HAS_AVX512 else "avx512_emulated"
    for family, c in measured.items():
        assert c["candidates"] == [wide, "avx2"]
        assert set(c["seconds"]) == {wide, "avx2"}
        assert all(0 < t < 0.01 for t in c["seconds"].values()), c
        assert c["isa"] == min(c["seconds"], key=c["seconds"].get), family
    assert r["source"] == "measured in this process"
    # Cheap at first use: its CPU time (the wall time on a machine loaded by other jobs can be
    # many times that, and is reported beside it).
    assert 0 < r["calibration_cpu_ms"] < 100 and r["calibration_ms"] > 0
    for family in set(FAMILIES) - set(WITH_AVX512_VARIANT):
        assert r["families"][family]["how"] == "only"
        assert r["families"][family]["isa"] == "avx2"


def test_the_cache_round_trips(first_run):
    home, r1 = first_run
    assert r1["cache_note"] == ""
    assert os.path.dirname(r1["cache"]) == str(home / "cnnkern")
    with open(r1["cache"]) as f:
        stored = json.load(f)
    assert stored["cpu"] == r1["cpu"] and stored["build"] == r1["build"]
    assert {f: c["isa"] for f, c in stored["families"].items()} == \
        {f: c["isa"] for f, c in _measured(r1).items()}

    r2 = _fresh_report(home)
    assert r2["source"] == "cache " + r1["cache"]
    assert r2["calibration_ms"] == 0 and r2["calibration_cpu_ms"] == 0
    for family, c in _measured(r1).items():
        assert r2["families"][family]["how"] == "measured"
        assert r2["families"][family]["isa"] == c["isa"]
        assert r2["families"][family]["seconds"] == pytest.approx(c["seconds"], rel=1e-5)


def _stale(text, r):
    return text.replace(json.dumps(r["build"]), json.dumps("another build"))


def _names_a_missing_isa(text, r):
    return json.dumps({"cpu": r["cpu"], "build": r["build"],
                       "families": {f: {"isa": "avx1024", "seconds": {"avx2": 1e-5}}
                                    for f in WITH_AVX512_VARIANT}})


@pytest.mark.parametrize("corrupt", [
    lambda text, r: "not json at all {",
    lambda text, r: text[: len(text) // 2],          # truncated
    lambda text, r: text.replace("e-", "x-"),        # numbers that do not parse
    _stale,                                           # another build's choice
    _names_a_missing_isa,
], ids=["garbage", "truncated", "bad-number", "stale-build", "unknown-isa"])
def test_a_corrupt_or_stale_cache_is_measured_again_and_rewritten(first_run, tmp_path, corrupt):
    _, r1 = first_run
    with open(r1["cache"]) as f:
        good = f.read()
    path = tmp_path / "cnnkern" / os.path.basename(r1["cache"])
    path.parent.mkdir()
    path.write_text(corrupt(good, r1))
    r = _fresh_report(tmp_path)
    assert r["source"] == "measured in this process"
    assert r["cache"] == str(path) and r["cache_note"] == ""
    rewritten = json.loads(path.read_text())
    assert rewritten["build"] == r1["build"]
    assert sorted(rewritten["families"]) == sorted(WITH_AVX512_VARIANT)


def test_an_unwritable_cache_directory_is_not_an_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")  # XDG_CACHE_HOME is a file: the cache directory cannot be made
    r = _fresh_report(blocker)
    assert r["source"] == "measured in this process"
    assert r["cache_note"].startswith("not written"), r["cache_note"]
    assert sorted(_measured(r)) == sorted(WITH_AVX512_VARIANT)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512_emulated", "avx512"])
def test_the_override_wins_for_every_family(monkeypatch, isa):
    if isa == "avx512" and not HAS_AVX512:
        pytest.skip("this CPU has no AVX-512")
    monkeypatch.setenv("CNNKERN_ISA_CALIBRATION", "0")  # the override beats the rule as well
    monkeypatch.setenv("CNNKERN_CPU_ISA", isa)
    fams = tuning.isa_choices()["families"]
    for family in FAMILIES:
        expect = isa if isa in ("generic", "avx2") or family in WITH_AVX512_VARIANT else "avx2"
        assert fams[family] == {**fams[family], "isa": expect, "how": "forced", "seconds": {}}


def test_an_unknown_override_names_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv("CNNKERN_CPU_ISA", "avx1024")
    with pytest.raises(RuntimeError, match=r"CNNKERN_CPU_ISA.*'avx1024'.*choose from .*avx2"):
        tuning.isa_choices()


def _rule_from_cpuinfo():
    with open("/proc/cpuinfo") as f:
        intel = any(line.split(":")[1].strip() == "GenuineIntel"
                    for line in f if line.startswith("vendor_id"))
    return "avx512" if HAS_AVX512 and intel else "avx2"


def test_the_rule_applies_when_calibration_is_off(monkeypatch):
    monkeypatch.delenv("CNNKERN_CPU_ISA", raising=False)
    monkeypatch.setenv("CNNKERN_ISA_CALIBRATION", "0")
    r = tuning.isa_choices()
    assert r["rule"] == _rule_from_cpuinfo()
    for family, c in r["families"].items():
        if family in WITH_AVX512_VARIANT and HAS_AVX512:
            assert (c["how"], c["isa"], c["seconds"]) == ("rule", r["rule"], {})
        else:
            assert (c["how"], c["isa"]) == ("only", "avx2")


@pytest.mark.parametrize("algo, groups, families", [
    ("im2col", 1, ["gemm"]),
    ("winograd", 1, ["winograd", "gemm"]),
    ("direct", 1, ["direct"]),
    ("direct", 8, ["depthwise"]),
])
def test_explain_names_the_isa_of_each_family_and_why(monkeypatch, algo, groups, families):
    monkeypatch.setenv("CNNKERN_CPU_ISA", "avx2")
    x, w = torch.randn(1, 8, 12, 12), torch.randn(8, 8 // groups, 3, 3)
    e = cnnkern.explain(x, w, padding=1, groups=groups, algo=algo)
    assert e.cpu_isa == [f"{f}: avx2 (forced by CNNKERN_CPU_ISA)" for f in families]
    assert "cpu isa: " + "; ".join(e.cpu_isa) in str(e)


def test_explain_quotes_the_measured_figures(monkeypatch):
    monkeypatch.delenv("CNNKERN_CPU_ISA", raising=False)
    monkeypatch.delenv("CNNKERN_ISA_CALIBRATION", raising=False)
    if not HAS_AVX512:
        pytest.skip("nothing is measured in this process on a CPU without AVX-512")
    c = tuning.isa_choices()["families"]["gemm"]
    e = cnnkern.explain(torch.randn(1, 8, 12, 12), torch.randn(8, 8, 3, 3), padding=1,
                        algo="im2col")
    figures = ", ".join(f"{i} {t * 1e6:.1f} us" for i, t in c["seconds"].items())
    assert e.cpu_isa == [f"gemm: {c['isa']} (measured, median of its probe: {figures})"]
