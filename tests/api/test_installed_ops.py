"""What an installed cnnkern carries: the public ops only. The tests-only ops
(csrc/testing/ops, torch.ops.cnnkern_testing) are built by the tests into their own library and
never into cnnkern._C."""

import subprocess
import sys

# Every op csrc/cnnkern.cpp declares, and the CPU backend's ISA report
# (csrc/cpu/common/isa_report_op.cpp): the public API of the extension.
PUBLIC_OPS = {
    "conv2d", "conv2d_relu", "conv2d_backward_input", "conv2d_backward_weight",
    "bn_relu_train", "bn_relu_backward", "bn_add_relu_train",
    "max_pool2d_with_indices", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
    "conv2d_algorithms", "conv2d_known_algorithms", "conv2d_why_not", "conv2d_select",
    "conv2d_explain", "cpu_isa_report",
}

# A fresh interpreter: this test process may have loaded the tests-only library already.
_LIST_OPS = """
import torch, cnnkern
names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("cnnkern"))
print("\\n".join(names))
"""


def test_the_extension_registers_the_public_ops_and_nothing_else():
    out = subprocess.run([sys.executable, "-c", _LIST_OPS], capture_output=True, text=True,
                         check=True, timeout=300).stdout.split()
    namespaces = {name.split("::")[0] for name in out}
    assert namespaces == {"cnnkern"}, namespaces  # no cnnkern_testing, no cnnkern_emu
    assert {name.split("::")[1] for name in out} == PUBLIC_OPS


def test_the_extension_holds_no_test_only_code():
    import cnnkern

    symbols = subprocess.run(["nm", "-D", "--defined-only", cnnkern._C.__file__],
                             capture_output=True, text=True, check=True).stdout
    for marker in ("igemm_emulate", "wino_emulate", "pool_emu", "gemm_op", "mma_fragments_op"):
        assert marker not in symbols, marker
