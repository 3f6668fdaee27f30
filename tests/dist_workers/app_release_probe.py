"""``survopt-train`` as its console script runs it (pre-flight, start-up freeze, training, teardown), with
two probes: a weak reference to every model the distributed strategy wraps, and, after each
``DistContext.teardown``, one line naming what those references still point to (``NoneType``: collected).

A wrapped model that outlives its process group's teardown is destroyed at interpreter exit, where
gloo aborted a rank now and then (tests/test_distributed.py)."""
import sys
import weakref

from survopt_hydra.distributed import context, settings

refs = []
wrap_model = settings.DistributedSettings.wrap_model
teardown = context.DistContext.teardown


def probed_wrap(self, *args, **kwargs):
    model = wrap_model(self, *args, **kwargs)
    refs.append((type(model).__name__, weakref.ref(model)))
    return model


def probed_teardown(self):
    teardown(self)
    print("after teardown:", " ".join(f"{name}->{type(ref()).__name__}" for name, ref in refs), flush=True)


settings.DistributedSettings.wrap_model = probed_wrap
context.DistContext.teardown = probed_teardown

from survopt_hydra.app.train import main  # noqa: E402

sys.argv = ["survopt-train", *sys.argv[1:]]
main()
