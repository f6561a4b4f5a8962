"""Benchmark forward+gradient calls: onnxgrad against raw ONNX Runtime, PyTorch and MindSpore.

For each model of ``models`` (tiny = the seed example, an MLP, LeNet-5, a
transformer encoder block) it times one call that returns the loss and the
gradients of the first input and of every weight:

- ``onnxgrad``: ``ForwardValueAndGrad(WithLossCell(net, loss), ..., get_all=True,
  get_by_list=True)``, numpy in and out, called from one thread (the fast path);
  ``onnxgrad_threads``: the same object called from ``--caller-threads`` threads
  at once (default 4), each thread's results first checked equal to the serial
  call's; its time is the batch's wall time over all threads' calls;
- ``onnxgrad_plain``: the same call in another environment (``--plain-python``,
  e.g. Python 3.12 with the newest plain ``onnxruntime``): the standard-op
  graph on a runtime without training kernels, built by the builder
  subprocess (``onnxgrad builder install``); skipped where that Python's
  onnxruntime is the training build;
- ``ort``: raw ``InferenceSession.run`` on the same forward+backward graph
  (``onnxgrad._engine.gradient_model``), every input and weight fed by name;
  ``ort_iobinding``: the same session through an IOBinding bound once;
  ``ort_forward``: an inference session on the forward graph alone (for the
  forward+backward / forward ratio); ``gemm``: a 1024^3 MatMul, ORT's own GEMM
  throughput;
- ``torch``: PyTorch eager, ``torch.autograd.grad`` (tensors in and out);
- ``ms_pynative`` / ``ms_graph``: MindSpore's ``nn.ForwardValueAndGrad`` in
  PyNative and graph mode (MindSpore tensors in, ``asnumpy()`` of the last
  call's results ends each timed batch, which also waits for queued work).

Every system runs in its own worker process (``--worker SYSTEM``, a line
protocol on stdin/stdout): MindSpore sets ``OMP_NUM_THREADS=1`` for its
process and PyNative keeps a core busy after each call, so workers that are
not being timed are suspended (SIGSTOP) where the OS allows it. Before timing,
the loss and every gradient of each system is compared with raw ORT's
(rtol 1e-3, atol 1e-4); a mismatch is printed and marks the row. Then the
systems are interleaved: in each round every timer runs one batch of calls
sized to about ``--batch-seconds``; the table shows the median ms per call
and the interquartile range over the rounds. Warm-up calls are never timed.
The share of CPU time other processes used during each batch is measured
(/proc); a disturbed batch is rerun (full runs), and a busy machine is flagged
under the tables.

Threads: ORT ``intra_op_num_threads`` (raw sessions), ``torch.set_num_threads``,
MindSpore ``threads_num`` and ``OMP_NUM_THREADS`` all get ``--threads``
(default 2). onnxgrad's sessions take ORT's default, one thread per physical
core (the benchmark passes no session_config); the JSON records both.

Usage::

    python -m scripts.benchmarks                     # all models and systems, markdown to stdout
    python -m scripts.benchmarks --quick             # a smoke run: few, short rounds
    python -m scripts.benchmarks --models tiny,mlp --systems onnxgrad,ort,torch --json out.json
    python -m scripts.benchmarks --check-only        # cross-check only, exit 1 on a mismatch
    python -m scripts.benchmarks --systems onnxgrad,onnxgrad_plain,torch --plain-python .venv312/bin/python
    python -m scripts.benchmarks --real              # real architectures (the 'bench' extra)

Run from the repository root. Modules: ``common`` (systems, settings, the
cross-check), ``models`` (the models, built alike in every system),
``systems`` and ``worker`` (a worker process), ``parent`` (workers,
cross-check, interleaved rounds), ``report`` (derived figures and tables),
``real`` (``--real``), ``cli``.

Diagnostics go to stderr, the tables to stdout; the exit status is 1 when a
cross-check fails.
"""
