"""A converted model against its torch original: one training-mode or eval step each, outputs,
input gradients, parameter gradients and the state (running statistics) compared.
Shared by the fused-block tests (test_block_relu.py, test_convert_residual.py)."""
from conftest import assert_close


def run(model, x, mode):
    """Forward in train (mode=True) or eval, backward of sum(out^2): (out, grad of x, grads by name)."""
    model.train(mode)
    x = x.clone().requires_grad_()
    out = model(x)
    out.square().sum().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return out.detach(), x.grad, grads


def check_matches(model, original, x):
    for mode in (True, False, True):   # running statistics carry over from train to eval
        out, gx, grads = run(model, x, mode)
        ref, rx, rgrads = run(original, x, mode)
        assert_close(out, ref)
        assert_close(gx, rx)
        for k in rgrads:
            assert_close(grads[k], rgrads[k], msg=k)
    for k, v in original.state_dict().items():
        assert_close(model.state_dict()[k].double(), v.double(), msg=k)
