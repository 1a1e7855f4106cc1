"""bench/small_planes.py's pieces that decide what is timed: the candidate specs, the
environment switch around a call, and the busiest-thread clock."""

import importlib.util
import os
import pathlib
import time


_PATH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "small_planes.py"
_spec = importlib.util.spec_from_file_location("small_planes", _PATH)
small_planes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(small_planes)


def test_parse_spec():
    assert small_planes.parse_spec("auto") == ("auto", "auto", {})
    assert small_planes.parse_spec("old:im2col@A=1,B=x=y") == ("old", "im2col",
                                                                {"A": "1", "B": "x=y"})
    assert small_planes.parse_spec("im2col@A=2") == ("im2col@A=2", "im2col", {"A": "2"})


def test_with_env_sets_during_the_call_and_restores(monkeypatch):
    monkeypatch.setenv("H5_SET_BEFORE", "kept")
    monkeypatch.delenv("H5_UNSET_BEFORE", raising=False)
    seen = {}

    def fn():
        seen.update(a=os.environ.get("H5_SET_BEFORE"), b=os.environ.get("H5_UNSET_BEFORE"))
        return 7

    call = small_planes.with_env(fn, {"H5_SET_BEFORE": "1", "H5_UNSET_BEFORE": "2"})
    assert call() == 7 and seen == {"a": "1", "b": "2"}
    assert os.environ["H5_SET_BEFORE"] == "kept" and "H5_UNSET_BEFORE" not in os.environ


def test_busiest_thread_time_counts_this_threads_work_not_sleep():
    def spin():
        end = time.thread_time() + 0.02
        while time.thread_time() < end:
            pass

    busy = small_planes._busiest_seconds(spin, 3)
    assert 0.05 <= busy < 1.0
    assert small_planes._busiest_seconds(lambda: time.sleep(0.05), 1) < 0.03


def test_the_layer_set_is_resnet50s_3x3_and_strided_layers():
    names = [l["name"] for l in small_planes.small_plane_layers()]
    assert len(names) == 10 and "conv1" not in names
    assert {"layer4.1.conv2", "layer4.0.downsample.0", "layer2.0.conv2"} <= set(names)


def test_other_model_sets_and_named_layers():
    # ResNet-18: 3x3 at 56/28/14/7 and the three stride-2 3x3 + 1x1 downsamples (10 of 11).
    names = [l["name"] for l in small_planes.small_plane_layers("resnet18")]
    assert len(names) == 10 and "conv1" not in names
    assert {"layer1.0.conv1", "layer4.0.conv2", "layer3.0.downsample.0"} <= set(names)
    # --layers picks from the whole set, the stem included.
    stem = [l for l in small_planes.set_layers("googlenet") if l["name"] == "conv1.conv"]
    assert [(l["C"], l["K"], l["R"], l["stride"]) for l in stem] == [(3, 64, 7, [2, 2])]
