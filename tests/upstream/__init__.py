"""Test replicas of the upstream HDR baselines, written for semkt's tests (not copies of upstream code).

Each module re-implements one upstream class at the configuration its authors train with, so that the
module tree (``named_modules()`` paths), the ``state_dict`` keys and shapes (an upstream checkpoint loads
with ``strict=True``), the forward signature, the output (activation, tuple or tensor) and the in-place
activations that follow hooked tensors are the same. ``expected/<name>.txt`` lists ``name shape`` of every
parameter and buffer of the real upstream class, dumped from the upstream repository at the commit named
in its header; ``tests/test_upstream_replicas.py`` checks the replicas against it.

======================  =====================================  ==============================  =========
replica                 upstream                               file                            commit
======================  =====================================  ==============================  =========
``HDRTransformer``      liuzhen03/HDR-Transformer-PyTorch      models/hdr_transformer.py       97a244bf
``SCTNet``              Zongwei97/SCTNet                       models/SCTNet.py, SCAB.py       56576682
``SAFNet``              ltkong218/SAFNet                       models/SAFNet.py, utils.py      553e72a7
``SAFNet_S``            ltkong218/SAFNet                       models/SAFNet_S.py              553e72a7
``TMRNet``              cszhilu1998/BracketIRE                 models/syn_model.py             68427e36
======================  =====================================  ==============================  =========

AHDRNet (qingsenyangit/AHDRNet, model.py, 03d1329f) is ``examples/ahdr/model.py``.
"""
