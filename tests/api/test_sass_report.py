"""The static performance report (bench/sass_report.py): its SASS parser, instruction classes,
loop finder and occupancy calculator on hand-written inputs with hand-counted answers; then the
real extension: no kernel may spill registers (beyond the recorded ones, which may only shrink)."""

import json
import pathlib

import pytest
import torch

from cnnkern.bench import launch_config, occupancy, sass_bounds, sass_parse, sass_report
from cnnkern.tools.cli import main

# Two loops, the inner one the hot one: a k-loop at 0x0040..0x0100 inside an outer loop at
# 0x0020..0x0130, a CALLed subroutine (6 instructions up to RET) and the idle self-branch that
# ptxas puts after EXIT (not a loop). NOPs are padding and never counted.
SNIPPET = """
	code for sm_90
		Function : _Z6kernelPf
	.headerflags	@"EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
        /*0000*/                   MOV R1, c[0x0][0x28] ;                 /* 0x00000a0000017a02 */
        /*0010*/                   S2R R0, SR_TID.X ;                     /* 0x0000000000007919 */
        /*0020*/                   IMAD R2, R0, 0x4, RZ ;                 /* 0x0000000400027824 */
        /*0030*/                   STL.64 [R1], R2 ;                      /* 0x0000000201007387 */
        /*0040*/                   LDG.E.128.CONSTANT R4, [R2.64] ;       /* 0x0000000402047981 */
        /*0050*/                   STS.128 [R0], R4 ;                     /* 0x0000000400007388 */
        /*0060*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;          /* 0x0000000000007b1d */
        /*0070*/                   LDS R8, [R0+0x4] ;                     /* 0x0000040000087984 */
        /*0080*/                   LDSM.16.M88.4 R12, [R0] ;              /* 0x000000000000783b */
        /*0090*/                   HMMA.16816.F32 R16, R12, R8, R16 ;     /* 0x000000080c10723c */
        /*00a0*/                   FFMA R20, R8, R8, R20 ;                /* 0x0000000808147223 */
        /*00b0*/                   IADD3 R3, R3, 0x1, RZ ;                /* 0x0000000103037810 */
        /*00c0*/                   ISETP.GE.AND P0, PT, R3, 0x10, PT ;    /* 0x000000100300780c */
        /*00d0*/                   CALL.REL.NOINC 0x160 ;                 /* 0x0000000000007944 */
        /*00e0*/                   NOP ;                                  /* 0x0000000000007918 */
        /*00f0*/                   LDL R9, [R1+0x8] ;                     /* 0x0000080001097983 */
        /*0100*/               @!P0 BRA 0x40 ;                            /* 0xffffff3000008947 */
        /*0110*/                   LEA R2, P1, R0, R2, 0x2 ;              /* 0x0000000200027211 */
        /*0120*/                   ISETP.NE.AND P1, PT, R2, RZ, PT ;      /* 0x000000ff0200720c */
        /*0130*/                @P1 BRA 0x20 ;                            /* 0xfffffee000001947 */
        /*0140*/                   STG.E [R2.64], R20 ;                   /* 0x0000001402007986 */
        /*0150*/                   EXIT ;                                 /* 0x000000000000794d */
        /*0160*/                   IMAD.HI.U32 R5, R4, R4, RZ ;           /* 0x0000000404057227 */
        /*0170*/                   I2F.U32.RP R6, R5 ;                    /* 0x0000000500067306 */
        /*0180*/                   MUFU.RCP R6, R6 ;                      /* 0x0000000600067308 */
        /*0190*/                   IADD3 R5, R6, -0x2, RZ ;               /* 0xfffffffe06057810 */
        /*01a0*/                   SHF.R.U32.HI R5, RZ, 0x1, R5 ;         /* 0x0000000105057819 */
        /*01b0*/                   RET.REL.NODEC R4 0x0 ;                 /* 0x0000000004007950 */
        /*01c0*/                   BRA 0x1c0;                             /* 0xfffffff000007947 */
        /*01d0*/                   NOP;                                   /* 0x0000000000007918 */
		..........
"""

RES = """
Fatbin elf code:
================
arch = sm_90
code version = [1,8]
identifier = /src/csrc/cuda/k.cu

Resource usage:
 Common:
  GLOBAL:0
 Function _Z6kernelPf:
  REG:64 STACK:16 SHARED:17664 LOCAL:0 CONSTANT[0]:768 TEXTURE:0 SURFACE:0 SAMPLER:0
 Function _Z5otherv:
  REG:26 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:632 TEXTURE:0 SURFACE:0 SAMPLER:0
"""


def _kernel():
    return sass_parse.parse_sass(SNIPPET)["_Z6kernelPf"]


def test_parse_sass_reads_every_instruction_but_nops():
    instrs = _kernel()
    assert len(instrs) == 28  # 30 lines of code, 2 NOPs
    assert instrs[0] == sass_parse.Instr(0x0, "MOV", "R1, c[0x0][0x28]", "")
    bra = [i for i in instrs if i.addr == 0x100][0]
    assert (bra.opcode, bra.predicate, bra.branch_target()) == ("BRA", "@!P0", 0x40)


def test_classify_names_each_class():
    expect = {"HMMA.16816.F32": "mma", "HGMMA.64x128x16.F32": "mma", "FFMA": "ffma",
              "DFMA": "ffma", "FADD.FTZ": "fp_other", "LDS.U.128": "shared_ld",
              "LDSM.16.M88.4": "shared_ld", "STS.64": "shared_st", "LDG.E.CONSTANT": "global_ld",
              "STG.E.64": "global_st", "LDGSTS.E.BYPASS.128": "async_copy", "STL": "local",
              "LDL.LU": "local", "IMAD.WIDE.U32": "int", "IADD3": "int", "LEA.HI.X": "int",
              "SHF.R.S32.HI": "int", "LOP3.LUT": "int", "ISETP.GE.AND": "int",
              "BAR.SYNC.DEFER_BLOCKING": "barrier", "BRA": "control", "BSSY": "control",
              "S2R": "move", "I2F.U32.RP": "convert", "F2FP.F16.F32.PACK_AB": "convert",
              "NANOSLEEP": "other"}
    assert {op: sass_parse.classify(op) for op in expect} == expect


def test_loops_nest_and_the_hot_one_is_the_inner_one():
    instrs = _kernel()
    loops = sass_parse.find_loops(instrs)  # the self-branch at 0x1c0 is not a loop
    assert [(lp.start, lp.end, lp.depth, lp.innermost) for lp in loops] == [
        (0x20, 0x130, 1, False), (0x40, 0x100, 2, True)]
    ml = sass_parse.main_loop(instrs)
    assert (ml.start, ml.end) == (0x40, 0x100)
    body = sass_parse.body(instrs, ml)
    mix = sass_parse.mix(body)
    nonzero = {c: n for c, n in mix.items() if n}
    assert nonzero == {"mma": 1, "ffma": 1, "shared_ld": 2, "shared_st": 1, "global_ld": 1,
                       "local": 1, "int": 2, "barrier": 1, "control": 2}
    assert sum(mix.values()) == len(body) == 12
    # per warp: STS.128 512 B + LDS.32 128 B + LDSM .4 = four 8x8 b16 matrices, 512 B
    assert sass_parse.shared_bytes(body) == 512 + 128 + 512
    assert sass_parse.chain(instrs, ml) == [
        {"depth": 1, "start": 0x20, "end": 0x130, "instructions": 17, "exclusive": 5},
        {"depth": 2, "start": 0x40, "end": 0x100, "instructions": 12, "exclusive": 12}]
    assert sass_parse.subroutines(instrs) == {0x160: 6}


def test_main_loop_prefers_work_over_size():
    # two innermost loops: a long one of integer math, a short one with the FMAs
    lines = ["\t\tFunction : f"]
    addr = 0
    for body in (["IADD3 R1, R1, 0x1, RZ"] * 8, ["FFMA R2, R3, R4, R2", "LDS R3, [R5]"]):
        start = addr
        for op in body:
            lines.append(f"        /*{addr:04x}*/   {op} ;")
            addr += 0x10
        lines.append(f"        /*{addr:04x}*/   @P0 BRA {start:#x} ;")
        addr += 0x10
    instrs = sass_parse.parse_sass("\n".join(lines))["f"]
    ml = sass_parse.main_loop(instrs)
    assert (ml.start, ml.end) == (0x90, 0xb0)
    assert sass_parse.main_loop(instrs[:3]) is None  # no backward branch, no loop


def test_local_bytes_reads_the_access_width():
    st, ld = sass_parse.local_bytes(_kernel())
    assert (st, ld) == (8, 4)  # STL.64 and LDL (32 bits)


def test_parse_resources():
    res = sass_parse.parse_resources(RES)
    assert res["_Z6kernelPf"] == sass_parse.Resources(64, 16, 17664, 0, 768,
                                                     "/src/csrc/cuda/k.cu", "sm_90")
    assert res["_Z5otherv"].registers == 26 and res["_Z5otherv"].stack == 0


def test_short_name_drops_namespaces_and_parameters():
    d = ("void cnnkern::igemm_cuda::igemm_kernel<__half, cnnkern::igemm::FpropMap, "
         "cnnkern::igemm_cuda::MmaCompute<cnnkern::igemm_cuda::MmaOp<__half> > >"
         "(cnnkern::igemm::FpropMap::Params, __half const*)")
    assert sass_parse.short_name(d) == "igemm_kernel<__half, FpropMap, MmaCompute<MmaOp<__half> > >"
    assert sass_parse.short_name(
        "void cnnkern::(anonymous namespace)::bn_apply_kernel<float>(cnnkern::BnShape)") \
        == "bn_apply_kernel<float>"


@pytest.mark.parametrize("threads,regs,smem,blocks,warps,limiter", [
    # 64 regs x 32 lanes = 2048 per warp: 16384 / 2048 = 8 warps per sub-partition, 32 per SM
    (256, 64, 17664, 4, 32, "registers"),
    # 26 regs -> 832 -> 1024 per warp (unit 256): 16 warps per sub-partition, 64 per SM;
    # the 2048-thread limit allows 8 blocks too: a tie names the threads
    (256, 26, 0, 8, 64, "threads"),
    # 168 regs -> 5376 per warp: 3 warps per sub-partition = 12 = 3 blocks of 4 warps; smem
    # 100000 + 1024 reserved -> 101120 (128-byte units): 233472 // 101120 = 2 blocks
    (128, 168, 100000, 2, 8, "shared memory"),
    (256, 255, 0, 1, 8, "registers"),      # 255 -> 8192 per warp: 2 per sub-partition
    (32, 16, 0, 32, 32, "blocks"),         # 32 blocks per SM at most
    (256, 32, 240000, 0, 0, "shared memory"),  # over the 227 KiB a block may have
])
def test_occupancy_matches_hand_worked_numbers(threads, regs, smem, blocks, warps, limiter):
    o = occupancy.occupancy(threads, regs, smem)
    assert (o.blocks_per_sm, o.warps_per_sm, o.limiter) == (blocks, warps, limiter)


def test_occupancy_rejects_a_bad_block():
    with pytest.raises(ValueError, match="threads per block must be in 1..1024; got 2048"):
        occupancy.occupancy(2048, 32, 0)


def test_launch_config_resolves_constants(tmp_path):
    (tmp_path / "cuda").mkdir()
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "tile.h").write_text(
        "struct Tile { static constexpr int kThreads = 128; };")
    (tmp_path / "cuda" / "k.cu").write_text(
        "constexpr int kSmem = 4096;\n"
        "void f() {\n  gemm<T, Map><<<grid, Tile::kThreads, kSmem, stream>>>(a, b);\n"
        "  pool<T><<<blocks, 256>>>(x);\n  other<<<g, nthreads(x), 0, s>>>();\n}\n")
    t = launch_config.launches(tmp_path)
    where = f"{tmp_path.name}/cuda/k.cu:3"
    assert (t["gemm"].block, t["gemm"].dynamic_smem, t["gemm"].where) == (128, 4096, where)
    assert (t["pool"].block, t["pool"].dynamic_smem) == (256, 0)
    assert t["other"].block is None and t["other"].block_expr == "nthreads(x)"
    assert launch_config.lookup("pool<float>", t)[0] is t["pool"]
    assert launch_config.lookup("gone<float>", t) == (None, "no <<<>>> launch found in csrc/cuda")


def test_launch_config_takes_the_stated_bound_of_a_run_time_shared_memory_size(tmp_path):
    (tmp_path / "cuda").mkdir()
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "plan.h").write_text("constexpr int64_t kBudget = 48 * 1024;\n")
    (tmp_path / "cuda" / "k.cu").write_text(
        "void f() {\n  // sass-report: smem <= kBudget (the plan keeps it under)\n"
        "  const size_t smem = plan.elems * 4;\n"
        "  direct<T><<<grid, 256, smem, stream>>>(x);\n"
        "  other<T><<<grid, 256, bytes, stream>>>(x);\n}\n")
    t = launch_config.launches(tmp_path)
    assert (t["direct"].dynamic_smem, t["direct"].smem_expr) == (49152, "smem <= kBudget")
    assert t["other"].dynamic_smem is None  # no bound stated: unknown, not guessed


def test_gemm_bounds_match_hand_worked_numbers():
    # VGG16 conv3_2 as a GEMM: M = 32*56*56 = 100352 -> 1568 m-tiles x 4 n-tiles = 6272 blocks,
    # 48 on the busiest of 132 SMs; K = 256*9 = 2304 = 144 k-tiles of 16. A main loop of 613
    # instructions with 4 m16n8k16 MMAs per warp does 8 warps x 4 x 2048 = 65536 MACs = one
    # 64x64x16 k-tile per iteration: 144 iterations per block.
    k = {"main_loop_mix": {"mma": 4, "ffma": 0}, "main_loop": {"instructions": 613},
         "subroutine_instrs": 0, "main_loop_shared_bytes": 1024, "blocks_per_sm": 4}
    b = sass_bounds.gemm_bounds(k, "float16", 100352, 256, 2304)
    clock = 66.9e12 / (132 * 256)
    assert b.issue == pytest.approx(48 * 8 * 144 * 613 / (4 * clock))
    assert b.issue == pytest.approx(4.280e-3, rel=1e-3)
    assert b.tensor == pytest.approx(48 * 2 * 64 * 64 * 2304 / (989.4e12 * 2 / 3 / 132))
    assert b.smem == pytest.approx(48 * 8 * 144 * 1024 / (128 * clock))
    assert (b.fp32, b.hbm, b.limiter) == (0.0, 0.0, "issue")
    assert b.grid == (6272, pytest.approx(6272 / (132 * 4)))
    # a rewritten kernel whose iteration covers two k-tiles (or another tile): no stale figure
    with pytest.raises(sass_bounds.LoopNestChanged, match="131072 MACs"):
        sass_bounds.gemm_bounds(dict(k, main_loop_mix={"mma": 8, "ffma": 0}), "float16",
                                100352, 256, 2304)


def test_gemm_bounds_of_the_tensor_core_tile():
    # The tensor-core forward on VGG16 conv3_2: 128x128 tiles -> 784 x 2 = 1568 blocks, 12 on
    # the busiest SM; K = 2304 = 72 k-tiles of 32. 4 warps x 64 MMAs x 2048 = 524288 MACs =
    # one 128x128x32 k-tile per iteration: 72 iterations per block.
    k = {"main_loop_mix": {"mma": 64, "ffma": 0}, "main_loop": {"instructions": 180},
         "subroutine_instrs": 0, "main_loop_shared_bytes": 16 * 512, "blocks_per_sm": 2}
    b = sass_bounds.gemm_bounds(k, "float16", 100352, 256, 2304, bm=128, bn=128, bk=32,
                                threads=128)
    clock = 66.9e12 / (132 * 256)
    assert b.issue == pytest.approx(12 * 4 * 72 * 180 / (4 * clock))
    assert b.tensor == pytest.approx(12 * 2 * 128 * 128 * 2304 / (989.4e12 * 2 / 3 / 132))
    assert b.limiter == "tensor"
    assert b.grid == (1568, pytest.approx(1568 / (132 * 2)))


def test_tf32_tensor_core_row_follows_its_k_tiles():
    # The TF32 variant of the tensor-core forward on VGG16 conv3_2: the same 1568 blocks of
    # 128x128 (12 on the busiest SM), but a 64-byte stage row is 16 floats: 2304 / 16 = 144
    # k-tiles, each 4 warps x 64 m16n8k8 MMAs x 1024 MACs = 262144 = 128 x 128 x 16. Tensor
    # bound at 2/3 of the 494.7 TFLOP/s TF32 peak; DRAM: the fp32 tensors once each.
    assert sass_bounds.tc_plan(100352, 256, 2304, bk=16) == (128, 1, 144)
    k = {"main_loop_mix": {"mma": 64, "ffma": 0}, "main_loop": {"instructions": 200},
         "subroutine_instrs": 0, "main_loop_shared_bytes": 16 * 512, "blocks_per_sm": 2}
    vgg = sass_bounds.LAYERS[0]
    b = sass_bounds.igemm_tc_model("tf32")(
        vgg, {"igemm_tc_fprop_kernel<float, 128, 128, true>": k})
    clock = 66.9e12 / (132 * 256)
    assert b.issue == pytest.approx(12 * 4 * 144 * 200 / (4 * clock))
    assert b.tensor == pytest.approx(12 * 2 * 128 * 128 * 2304 / (494.7e12 * 2 / 3 / 132))
    tensors = 4 * (32 * 256 * 56 * 56 + 256 * 256 * 9 + 32 * 256 * 56 * 56)
    assert b.hbm == pytest.approx(tensors / 3.35e12)
    assert b.grid == (1568, pytest.approx(1568 / (132 * 2)))


def test_tensor_core_backward_bounds_follow_their_plans():
    # VGG16 conv3_2 grad-weight: M = K = 256, N = 9*256 = 2304 -> 2 x 18 = 36 big tiles, under
    # a wave; two resident per SM -> 264 // 36 = 7 slices of 448 k-tiles (100352 pixels = 3136
    # k-tiles of 32): 252 blocks, 2 on the busiest SM. The forward's rule would take the small
    # tile (144 blocks) instead.
    assert sass_bounds.tc_plan(256, 2304, 100352, split_large_first=True) == (128, 7, 448)
    assert sass_bounds.tc_plan(256, 2304, 100352) == (64, 1, 3136)
    # (one block per SM there: 264 // 36 / 2 = 3 slices of 1046 -> 1046 k-tiles on an SM, more
    # than 2 x 448 = 896: kept at 7.) ResNet-50 3x3 s2 56->28: M = 128, N = 9*128 = 1152 -> 9
    # big tiles; 32*28*28 = 25088 pixels = 784 k-tiles. Two per SM: 264 // 9 = 29 -> 28 slices
    # of 28, 252 blocks, 2 x 28 = 56 k-tiles on the busiest SM; one per SM: 132 // 9 = 14
    # slices of 56, 126 blocks, 56 k-tiles: no more, with half the fp32 partial sums.
    assert sass_bounds.tc_plan(128, 1152, 25088, split_large_first=True) == (128, 14, 56)
    k = {"main_loop_mix": {"mma": 64, "ffma": 0}, "main_loop": {"instructions": 206},
         "subroutine_instrs": 0, "main_loop_shared_bytes": 16 * 512, "blocks_per_sm": 2}
    vgg = sass_bounds.LAYERS[0]
    b = sass_bounds.igemm_tc_wgrad_model("float16")(
        vgg, {"igemm_tc_wgrad_kernel<__half, 128, 128>": k})
    clock = 66.9e12 / (132 * 256)
    assert b.issue == pytest.approx(2 * 4 * 448 * 206 / (4 * clock))
    assert b.tensor == pytest.approx(2 * 2 * 128 * 128 * 448 * 32 / (989.4e12 * 2 / 3 / 132))
    # x, w, dy once each (fp16) + the fp32 partial sums written and read back.
    tensors = 2 * (32 * 256 * 56 * 56 * 2 + 256 * 256 * 9)
    assert b.hbm == pytest.approx((tensors + 2 * 4 * 7 * 256 * 2304) / 3.35e12)
    assert b.grid == (252, pytest.approx(252 / (132 * 2)))
    # grad-input, stride 1: the forward on the swapped problem (for conv3_2 the same shape)
    # plus the re-laid weight's two copies, each read and written.
    fwd_k = {"igemm_tc_fprop_kernel<__half, 128, 128, true>": dict(k, main_loop={
        "instructions": 180})}
    d = sass_bounds.igemm_tc_dgrad_model("float16")(vgg, fwd_k)
    f = sass_bounds.igemm_tc_model("float16")(vgg, fwd_k)
    assert (d.issue, d.tensor) == (f.issue, f.tensor)
    assert d.hbm == pytest.approx(f.hbm + 2 * 2 * 2 * 256 * 256 * 9 / 3.35e12)
    with pytest.raises(sass_bounds.LoopNestChanged, match="strided grad-input"):
        sass_bounds.igemm_tc_dgrad_model("float16")(sass_bounds.LAYERS[3], fwd_k)


def test_general_dgrad_model_runs_the_gather_gemm_over_every_input_position():
    # ResNet-50 3x3 s2 (N32 C128 K128 56x56 -> 28x28) grad-input through DgradMap: M = N*H*W =
    # 32*56*56 = 100352 -> 1568 m-tiles x C/64 = 2 n-tiles = 3136 blocks, 24 on the busiest of
    # 132 SMs; K*R*S = 1152 = 72 k-tiles of 16, stride holes included.
    layer = sass_bounds.Layer("3x3 s2", 32, 128, 56, 56, 128, stride=2)
    k = {"main_loop_mix": {"mma": 4, "ffma": 0}, "main_loop": {"instructions": 488},
         "subroutine_instrs": 0, "main_loop_shared_bytes": 1024, "blocks_per_sm": 3}
    model = sass_bounds.igemm_general_dgrad_model("float16")
    assert model.kernels == ["igemm_kernel<__half, DgradMap, MmaCompute<MmaOp<__half> > >"]
    b = model(layer, {model.kernels[0]: k})
    clock = 66.9e12 / (132 * 256)
    assert b.issue == pytest.approx(24 * 8 * 72 * 488 / (4 * clock))
    assert b.tensor == pytest.approx(24 * 2 * 64 * 64 * 1152 / (989.4e12 * 2 / 3 / 132))
    assert b.grid == (3136, pytest.approx(3136 / (132 * 3)))
    # only strided convolutions take it (stride 1 has the swapped-forward kernels)
    assert sass_bounds._applies("strided", layer)
    assert not sass_bounds._applies("strided", sass_bounds.Layer("3x3", 32, 128, 56, 56, 128))


def test_fp32_core_gemm_bounds_match_hand_worked_numbers():
    # Winograd F(4x4) on VGG16 conv3_2 through the fp32 core: 36 GEMMs of M = K = 256 channels,
    # N = 32*14*14 = 6272 tiles, reduction C = 256. 2 x 49 tiles of 128 x 128 per GEMM = 98
    # x 36 = 3528 blocks, 27 on the busiest SM; 32 k-tiles of 8. 512 FFMAs per thread (8 warps
    # x 512 x 32 lanes = 131072 MACs = one 128x128x8 k-tile) in a 617-instruction loop.
    k = {"main_loop_mix": {"mma": 0, "ffma": 512}, "main_loop": {"instructions": 617},
         "subroutine_instrs": 0, "main_loop_shared_bytes": 512, "blocks_per_sm": 2}
    b = sass_bounds.gemm_bounds(k, "float32", 256, 6272, 256, batches=36,
                                **sass_bounds.FP32_CORE_TILE)
    clock = 66.9e12 / (132 * 256)
    assert b.issue == pytest.approx(27 * 8 * 32 * 617 / (4 * clock))
    assert b.fp32 == pytest.approx(27 * 2 * 128 * 128 * 256 / (66.9e12 / 132))
    assert b.grid == (3528, pytest.approx(3528 / (132 * 2)))
    with pytest.raises(sass_bounds.LoopNestChanged, match="64x64x16 tile 65536"):
        sass_bounds.gemm_bounds(k, "float32", 256, 6272, 256, batches=36)


def test_fp32_core_backward_bounds_follow_their_plan():
    # VGG16 conv3_2 float32 grad-weight on the fp32 core: M = K = 256, N = 9*256 = 2304 -> 2 x
    # 18 = 36 tiles, under a wave; 2 resident per SM -> 264 // 36 = 7 slices of 1792 k-tiles
    # (100352 pixels = 12544 k-tiles of 8): 252 blocks, 2 on the busiest SM.
    assert sass_bounds.fp32_wgrad_plan(256, 2304, 100352) == (128, 7, 1792)
    assert sass_bounds.fp32_wgrad_plan(256, 2304, 200) == (128, 1, 25)  # 25 k-tiles: no 2 x 16
    k = {"main_loop_mix": {"mma": 0, "ffma": 512}, "main_loop": {"instructions": 700},
         "subroutine_instrs": 0, "main_loop_shared_bytes": 512, "blocks_per_sm": 2}
    vgg = sass_bounds.LAYERS[0]
    b = sass_bounds.igemm_fp32_wgrad_model(vgg, {"igemm_fp32_wgrad_kernel<128>": k})
    clock = 66.9e12 / (132 * 256)
    assert b.issue == pytest.approx(2 * 8 * 1792 * 700 / (4 * clock))
    assert b.fp32 == pytest.approx(2 * 2 * 128 * 128 * 1792 * 8 / (66.9e12 / 132))
    tensors = 4 * (2 * 32 * 256 * 56 * 56 + 256 * 256 * 9)  # x, dy, w once each
    assert b.hbm == pytest.approx((tensors + 2 * 4 * 7 * 256 * 2304) / 3.35e12)
    assert b.grid == (252, pytest.approx(252 / (132 * 2)))
    # grad-input, stride 1: the fp32 forward on the swapped problem (for conv3_2 the same
    # shape) plus the flipped weight's one copy, read and written.
    fwd = {sass_bounds.IGEMM_FP32: k}
    d = sass_bounds.igemm_fp32_dgrad_model(vgg, fwd)
    f = sass_bounds.igemm_fp32_model(vgg, fwd)
    assert (d.issue, d.fp32) == (f.issue, f.fp32)
    assert d.hbm == pytest.approx(f.hbm + 2 * 4 * 256 * 256 * 9 / 3.35e12)
    with pytest.raises(sass_bounds.LoopNestChanged, match="strided grad-input"):
        sass_bounds.igemm_fp32_dgrad_model(sass_bounds.LAYERS[3], fwd)


def test_fp32_core_wgrad_narrow_tile_follows_its_plan():
    # ResNet-50 1x1 256->64 56x56, batch 32, float32 grad-weight: M = K = 64 <= 64 -> the 64 x
    # 128 tile (K = 65 keeps 128). N = C = 256: 1 x 2 = 2 tiles; 32*56*56 = 100352 pixels =
    # 12544 k-tiles; 2 x 132 // 2 = 132 slices wanted, at most 128 -> 98 k-tiles a slice,
    # ceil(12544 / 98) = 128 slices: 256 blocks, 2 on the busiest SM.
    assert sass_bounds.fp32_wgrad_plan(64, 256, 100352) == (64, 128, 98)
    assert sass_bounds.fp32_wgrad_plan(65, 256, 100352) == (128, 128, 98)
    assert sass_bounds.fp32_wgrad_plan(64, 256 * 9 * 70, 100352)[:2] == (64, 1)  # 140 tiles
    layer = next(l for l in sass_bounds.LAYERS if l.name.startswith("ResNet-50 1x1 N32 C256->64"))
    assert sass_bounds.igemm_fp32_wgrad_model.kernels_for(layer) == ["igemm_fp32_wgrad_kernel<64>"]
    # The narrow tile: 4 x 8 outputs per thread, 8 x 4 x 8 = 256 FFMAs per k-tile (8 warps x
    # 256 x 32 lanes = 65536 MACs = one 64x128x8 k-tile).
    k = {"main_loop_mix": {"mma": 0, "ffma": 256}, "main_loop": {"instructions": 400},
         "subroutine_instrs": 0, "main_loop_shared_bytes": 384, "blocks_per_sm": 2}
    b = sass_bounds.igemm_fp32_wgrad_model(layer, {"igemm_fp32_wgrad_kernel<64>": k})
    clock = 66.9e12 / (132 * 256)
    assert b.issue == pytest.approx(2 * 8 * 98 * 400 / (4 * clock))
    assert b.fp32 == pytest.approx(2 * 2 * 64 * 128 * 98 * 8 / (66.9e12 / 132))
    tensors = 4 * (32 * 256 * 56 * 56 + 64 * 256 + 32 * 64 * 56 * 56)  # x, w, dy once each
    assert b.hbm == pytest.approx((tensors + 2 * 4 * 128 * 64 * 256) / 3.35e12)
    assert b.grid == (256, pytest.approx(256 / (132 * 2)))


def test_fused_winograd_bounds_match_hand_worked_numbers():
    # Fused F(4x4) on VGG16 conv3_2: 32 x 14 x 14 = 6272 tiles -> 392 blocks of 16 tiles x 8
    # blocks of 32 output channels = 3136 blocks of 288 threads (9 warps), 24 on the busiest
    # SM; 256 channels in 86 iterations of 3. Each iteration: 36 points x 32 x 16 x 3 = 55296
    # MACs; a loop of 332 instructions with 198 FFMAs (an earlier build's; the committed
    # report has 343 / 199): 9 warps x 198 x 32 lanes = 57024 (192 per thread for the GEMMs,
    # 6 in the transforms). DRAM: x and y (32 x 256 x 56 x 56 floats each) and U (36 x 256 x 256
    # floats) once, plus the filter transform (w read, U written).
    layer = sass_bounds.LAYERS[0]
    fused = {"main_loop_mix": {"mma": 0, "ffma": 198}, "main_loop": {"instructions": 332},
             "subroutine_instrs": 0, "main_loop_shared_bytes": 8832, "blocks_per_sm": 1}
    filt = {"main_loop_chain": [{"depth": 1, "exclusive": 100}], "main_loop": {"depth": 1},
            "subroutine_instrs": 0}
    ks = {"wino_fused4_kernel<float, true>": fused, "wino_filter_kernel<4, float>": filt}
    b = sass_bounds.winograd_fused_model(4)(layer, ks)
    clock = 66.9e12 / (132 * 256)
    filt_issue = 256 * 256 / 32 * 100 / (132 * 4 * clock)
    assert b.issue == pytest.approx(24 * 9 * 86 * 332 / (4 * clock) + filt_issue)
    assert b.issue == pytest.approx(779.0e-6, rel=1e-3)
    assert b.fp32 == pytest.approx(24 * 2 * 55296 * 86 / (66.9e12 / 132))
    assert b.smem == pytest.approx(24 * 9 * 86 * 8832 / (128 * clock))
    x = y = 32 * 256 * 56 * 56 * 4
    u, w = 36 * 256 * 256 * 4, 256 * 256 * 9 * 4
    assert b.hbm == pytest.approx((x + y + u + w + u) / 3.35e12)
    assert b.grid == (3136, pytest.approx(3136 / 132))
    assert b.limiter == "issue"
    # a rewritten block (say 4 channels per iteration): no figure from the stale shape
    with pytest.raises(sass_bounds.LoopNestChanged, match="55296 MACs"):
        sass_bounds.winograd_fused_model(4)(layer, dict(ks, **{
            "wino_fused4_kernel<float, true>": dict(fused, main_loop_mix={"ffma": 262})}))


def test_fp32_implicit_gemm_model_puts_channels_on_m_and_positions_on_n():
    # conv2d_igemm_fp32.cu on VGG16 conv3_2: M = K = 256 channels (2 row tiles), N = 32*56*56
    # = 100352 positions (784 column tiles): 1568 blocks, 12 on the busiest SM (99% busy: no
    # split); reduction 256*9 = 2304 = 288 k-tiles of 8, each 512 FFMAs per thread in a
    # 710-instruction loop.
    k = {"main_loop_mix": {"mma": 0, "ffma": 512}, "main_loop": {"instructions": 710},
         "subroutine_instrs": 0, "main_loop_shared_bytes": 512, "blocks_per_sm": 2}
    layer = sass_bounds.LAYERS[0]
    assert sass_bounds.igemm_fp32_model.kernels_for(layer) == [
        "igemm_fp32_fprop_kernel<128, PatchStager>"]
    b = sass_bounds.igemm_fp32_model(layer, {sass_bounds.IGEMM_FP32: k})
    clock = 66.9e12 / (132 * 256)
    assert b.issue == pytest.approx(12 * 8 * 288 * 710 / (4 * clock))
    assert b.fp32 == pytest.approx(12 * 2 * 128 * 128 * 2304 / (66.9e12 / 132))
    assert b.hbm == pytest.approx(4 * (2 * 32 * 256 * 56 * 56 + 256 * 256 * 9) / 3.35e12)
    assert b.grid == (1568, pytest.approx(1568 / 264))


def test_fp32_implicit_gemm_model_takes_the_narrow_pointwise_kernel_for_k64():
    # ResNet-50's 1x1 256->64: K = 64 takes the 64 x 128 tile (half the FFMAs per block: 256
    # per thread and k-tile) and the pointwise gather: 784 blocks, 6 per SM, 32 k-tiles.
    k = {"main_loop_mix": {"mma": 0, "ffma": 256}, "main_loop": {"instructions": 350},
         "subroutine_instrs": 0, "main_loop_shared_bytes": 384, "blocks_per_sm": 2}
    one = sass_bounds.LAYERS[2]
    name = "igemm_fp32_fprop_kernel<64, PointwiseStager>"
    assert sass_bounds.igemm_fp32_model.kernels_for(one) == [name]
    b = sass_bounds.igemm_fp32_model(one, {name: k})
    clock = 66.9e12 / (132 * 256)
    assert b.issue == pytest.approx(6 * 8 * 32 * 350 / (4 * clock))
    assert b.fp32 == pytest.approx(6 * 2 * 64 * 128 * 256 / (66.9e12 / 132))
    assert b.grid == (784, pytest.approx(784 / 264))
    # the 128-row kernel's loop (512 FFMAs) for this 64-row tile: no figure from a stale shape
    with pytest.raises(sass_bounds.LoopNestChanged, match="64x128x8"):
        sass_bounds.igemm_fp32_model(one, {name: dict(k, main_loop_mix={"mma": 0, "ffma": 512})})


def test_fp32_implicit_gemm_model_splits_the_14x14_layer_four_ways():
    # ResNet-50 3x3 14x14: 2 x 49 = 98 blocks leave 34 of 132 SMs idle; 4 slices of 72 k-tiles
    # (of 288): 392 blocks, 3 on the busiest SM. The slices write 4 partial sums per output
    # (32*256*14*14 = 1605632 floats) that the reduce kernel reads back before writing y.
    k = {"main_loop_mix": {"mma": 0, "ffma": 512}, "main_loop": {"instructions": 710},
         "subroutine_instrs": 0, "main_loop_shared_bytes": 512, "blocks_per_sm": 2}
    layer = sass_bounds.LAYERS[1]
    assert sass_bounds.fp32_schedule(layer) == (128, 4, 72)
    assert sass_bounds.igemm_fp32_model.kernels_for(layer) == [
        sass_bounds.IGEMM_FP32, sass_bounds.IGEMM_FP32_REDUCE]
    b = sass_bounds.igemm_fp32_model(layer, {sass_bounds.IGEMM_FP32: k})
    clock = 66.9e12 / (132 * 256)
    assert b.issue == pytest.approx(3 * 8 * 72 * 710 / (4 * clock))
    out = 32 * 256 * 14 * 14
    x, w = 32 * 256 * 14 * 14, 256 * 256 * 9
    assert b.hbm == pytest.approx(4 * ((x + w + 4 * out) + (4 * out + out)) / 3.35e12)
    assert b.grid == (392, pytest.approx(392 / 264))
    # ResNet-50 3x3 s2 56->28: 196 blocks (two rounds, the second half full): 2 slices of 72
    assert sass_bounds.fp32_schedule(sass_bounds.LAYERS[3]) == (128, 2, 72)


def test_nest_bounds_weigh_each_loop_by_its_trips():
    # a max-pool: per output, the outer loop's 100 own instructions once, the row loop's 10
    # three times, the 20-instruction column loop nine times: 100 + 30 + 180 = 310 per thread
    k = {"main_loop_chain": [{"depth": 1, "exclusive": 100}, {"depth": 2, "exclusive": 10},
                             {"depth": 3, "exclusive": 20}],
         "main_loop": {"depth": 3}, "subroutine_instrs": 0}
    b = sass_bounds.nest_bounds(k, 32 * 132 * 4, {1: 1, 2: 3, 3: 9}, hbm_bytes=3.35e6)
    clock = 66.9e12 / (132 * 256)
    assert b.issue == pytest.approx(310 / clock)  # one warp per scheduler, 310 issues each
    assert b.hbm == pytest.approx(1e-6)
    # the kernel rewritten with its main loop one level deeper: no figure from stale trips
    with pytest.raises(sass_bounds.LoopNestChanged, match="depth 4, .* for depth 3"):
        sass_bounds.nest_bounds(dict(k, main_loop={"depth": 4}), 1, {1: 1, 2: 3, 3: 9}, 0.0)


def test_direct_model_follows_the_plan_and_counts_the_tile_overhang():
    layer = sass_bounds.Layer("ResNet-50 3x3 14x14", 32, 256, 14, 14, 256)
    # core/direct_tile.h by hand: the 18x18 halo tile + 9 taps x 32 filters = 612 floats per
    # channel; 47 KiB / 4 B = 12032 floats hold 19 channels, capped at 8 per stage
    assert sass_bounds.direct_plan(layer) == {
        "kernel": "conv2d_direct_forward_kernel<float, 3, 3, true>", "cb": 8, "taps_h": 1,
        "taps_w": 1}
    strided = sass_bounds.Layer("3x3 s2", 32, 128, 56, 56, 128, stride=2)
    assert sass_bounds.direct_plan(strided)["kernel"].endswith("3, 3, false>")
    one = sass_bounds.Layer("1x1", 32, 256, 56, 56, 64, R=1, S=1, pad=0)
    assert sass_bounds.direct_plan(one) == {
        "kernel": "conv2d_direct_forward_kernel<float, 1, 1, true>", "cb": 8, "taps_h": 1,
        "taps_w": 1}
    # 32 images x 8 channel blocks x one 16x16 tile per 14x14 plane; each thread: 32 stages of
    # 8 channels, 288 FFMAs per channel (9 taps x 2x2 outputs x 8 filters)
    chain = [{"depth": d, "exclusive": 10} for d in range(1, 5)] + [{"depth": 5, "exclusive": 376}]
    k = {"main_loop_chain": chain, "main_loop": {"depth": 5}, "subroutine_instrs": 0,
         "main_loop_mix": {"ffma": 288}, "main_loop_shared_bytes": 11264, "blocks_per_sm": 2}
    b = sass_bounds.direct_model(layer, {"conv2d_direct_forward_kernel<float, 3, 3, true>": k})
    threads = 32 * 8 * 256
    assert b.grid == (256, pytest.approx(256 / 264))
    # the FP32 bound is the FMAs executed: the layer's own times the 16x16 tile over 14x14
    assert b.fp32 == pytest.approx(layer.flops * (16 / 14) ** 2 / 66.9e12)
    clock = 66.9e12 / (132 * 256)
    per_thread = 10 * (1 + 32 + 32 + 32) + 376 * 256
    assert b.issue == pytest.approx(threads / 32 * per_thread / (132 * 4 * clock))
    assert b.smem == pytest.approx(threads / 32 * 256 * 11264 / (128 * clock * 132))


def test_cli_says_why_without_an_extension(tmp_path, capsys):
    assert main(["sass-report", "--so", str(tmp_path / "missing.so")]) == 2
    assert "no built extension" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The real extension
# ---------------------------------------------------------------------------------------------

# Kernels allowed to spill: (spill store bytes, spill load bytes), as ptxas -v counts them
# (nvcc 13.0, sm_90). This list may only shrink: a kernel not on it that spills, or one on it
# that spills more, fails. Empty since the old general implicit GEMM's 14 spilling variants
# were given an 80-register budget (__launch_bounds__(256, 3) in cuda/implicit_gemm_kernel.cuh).
KNOWN_SPILLS: dict = {}


@pytest.fixture(scope="module")
def report():
    tool = sass_report.find_tool("cuobjdump")
    if tool is None:
        pytest.skip("cuobjdump not found (PATH, CUDA_HOME/bin, triton/backends/nvidia/bin)")
    so = sass_report.extension_path()
    if so is None:
        pytest.skip("no built cnnkern/_C*.so")
    if not sass_report.list_cubins(tool, so):
        pytest.skip(f"{so.name} has no CUDA cubins (a CNNKERN_CUDA=0 build)")
    return sass_report.analyse(so, tool)


def _spill_regressions(kernels, known):
    """{kernel: (store, load bytes)} of the kernels that spill and are not in `known`, or spill
    more than it records."""
    spills = {k["name"]: (k["spill_store_bytes"], k["spill_load_bytes"])
              for k in kernels if k["spills"]}
    return {n: b for n, b in spills.items()
            if n not in known or b[0] > known[n][0] or b[1] > known[n][1]}


def test_the_spill_check_catches_a_new_spill_and_a_larger_one():
    def k(name, st, ld):
        return {"name": name, "spill_store_bytes": st, "spill_load_bytes": ld,
                "spills": st + ld > 0}
    known = {"a<float>": (16, 16)}
    assert _spill_regressions([k("a<float>", 16, 16), k("b<float>", 0, 0)], known) == {}
    assert _spill_regressions([k("a<float>", 8, 0)], known) == {}  # better is fine
    assert _spill_regressions([k("a<float>", 16, 24)], known) == {"a<float>": (16, 24)}
    assert _spill_regressions([k("b<float>", 4, 0)], known) == {"b<float>": (4, 0)}


def test_a_library_without_device_code_has_no_cubins():
    # what the report fixture below skips on: the .so of a CNNKERN_CUDA=0 build
    tool = sass_report.find_tool("cuobjdump")
    if tool is None:
        pytest.skip("cuobjdump not found")
    cpu_only = sorted((pathlib.Path(torch.__file__).parent / "lib").glob("libc10.so*"))
    assert cpu_only, "torch/lib/libc10.so"
    assert sass_report.list_cubins(tool, cpu_only[0]) == []


def test_no_kernel_spills_registers(report):
    worse = _spill_regressions(report["kernels"], KNOWN_SPILLS)
    assert not worse, f"register spills (store, load bytes) in: {worse}"


def test_every_kernel_has_a_launch_and_fits_on_an_sm(report):
    assert len(report["kernels"]) > 0
    for k in report["kernels"]:
        assert k["registers"] > 0, k["name"]
        assert k["block"] is not None, f"{k['name']}: {k['launch_where']}"
        assert k["blocks_per_sm"] >= 1, k["name"]
        if k["main_loop"] is not None:  # the mix counts every instruction of the loop body
            assert sum(k["main_loop_mix"].values()) == k["main_loop"]["instructions"], k["name"]


def test_layer_bounds_are_consistent(report):
    rows = [r for r in report["layers"] if "note" not in r]
    assert rows
    for r in rows:
        bounds = {n: r[f"{n}_us"] for n in ("issue", "tensor", "fp32", "smem", "hbm")}
        assert r["predicted_us"] == max(bounds.values()) > 0
        assert bounds[r["limiter"]] == r["predicted_us"]


def test_cli_writes_text_and_json(report, tmp_path, capsys):
    out = tmp_path / "sass"
    assert main(["sass-report", "--out", str(out)]) == 0  # the cached disassembly: quick
    data = json.loads(pathlib.Path(str(out) + ".json").read_text())
    assert [k["name"] for k in data["kernels"]] == [k["name"] for k in report["kernels"]]
    text = pathlib.Path(str(out) + ".txt").read_text()
    assert text.startswith("cnnkern static performance report") and "Method" in text
    assert "Bound analysis" in capsys.readouterr().out
