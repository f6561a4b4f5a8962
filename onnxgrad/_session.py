"""The one module that opens ONNX Runtime sessions.

A :class:`Session` binds the network's parameters once (on the CPU by pointer to
their buffers, on a device as their device copies), so a call copies no weights
and sees in-place updates; only the call's inputs are bound per call.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import onnx

from onnxgrad import _device, _parameter, _validate
from onnxgrad._ort import ort
from onnxgrad._parameter import Parameter
from onnxgrad.errors import InputError, RuntimeFailure, UnsupportedGradientError

__all__ = ["Session", "check_providers"]

logger = logging.getLogger(__name__)

_PREALLOCATE_BYTES = 1 << 18
_NO_KERNEL = re.compile(r"Could not find an implementation for (\w+)\(")

Providers = Sequence[str | tuple[str, Mapping[str, Any]]] | None


def check_providers(providers: Providers) -> list:
    """Validates ONNX Runtime provider names (with options); defaults to the CPU."""
    if providers is None:
        return ["CPUExecutionProvider"]
    if isinstance(providers, str):
        providers = [providers]
    available = ort.get_available_providers()
    checked = []
    for entry in providers:
        name = entry[0] if isinstance(entry, tuple) else entry
        if name not in available:
            raise InputError(
                f"Execution provider {name!r} is not available in this onnxruntime build; available: {available}. "
                "Install the onnxruntime package for it (CUDA: pip install 'onnxgrad[cuda]', CANN: "
                "'onnxgrad[cann]'; see the README) or choose another provider."
            )
        checked.append(entry)
    return checked


# ORT sessions by share key, alive while some Session uses them. ORT sessions
# are safe to run concurrently; the per-network state is the IOBinding.
_shared: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_shared_lock = threading.Lock()


#: Keys of ``session_config`` that set ``SessionOptions`` attributes (thread pool sizes) instead of config entries.
_OPTION_ATTRIBUTES = ("intra_op_num_threads", "inter_op_num_threads")


def _open(
    model: onnx.ModelProto, providers: list, config: Mapping[str, str], share_key: Hashable | None
) -> ort.InferenceSession:
    if share_key is not None:
        with _shared_lock:
            session = _shared.get(share_key)
        if session is not None:
            return session
    options = ort.SessionOptions()
    options.log_severity_level = 3
    for key, value in config.items():
        if key in _OPTION_ATTRIBUTES:  # SessionOptions attributes, not config entries
            setattr(options, key, int(value))
            continue
        try:
            options.add_session_config_entry(key, value)
        except Exception as err:
            raise InputError(
                f"ONNX Runtime refused session config entry {key!r}={value!r} ({_last_line(err)}): "
                "see onnxruntime_session_options_config_keys.h for the keys."
            ) from err
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=providers)
    except Exception as err:
        missing = _NO_KERNEL.search(str(err))
        if missing:
            raise UnsupportedGradientError(
                f"ONNX Runtime has no kernel for {missing.group(1)} with these dtypes on {providers[0]!r} "
                "(its training kernels are mostly float32-only): use float32 inputs and weights, or "
                "another execution provider.",
                op_type=missing.group(1),
            ) from err
        raise RuntimeFailure(
            f"ONNX Runtime could not create a session for the graph: {_last_line(err)}. "
            "Check the model with `onnxgrad inspect`; if it is valid ONNX, please report this."
        ) from err
    if share_key is not None:
        with _shared_lock:
            _shared[share_key] = session
    return session


class Session:
    """An ORT session over one (gradient) graph with parameters bound once.

    On the CPU, parameters are bound by pointer to their numpy buffers; when
    every output's shape and dtype is known in advance (``output_types``), each
    call allocates fresh numpy arrays and lets ONNX Runtime write straight into
    them: no copy of the results, and no result ever aliases another call's.

    On a device (see :mod:`onnxgrad._device`), parameters are bound as their
    device copies, rebound only when a copy is replaced; call inputs may be
    numpy arrays (copied over) or OrtValues (bound as they are), and each
    output comes back as a host array or stays on the device as an OrtValue.

    Args:
        model: the model to run.
        providers: checked provider list (see :func:`check_providers`).
        parameters: ``{graph input name: Parameter}`` bound for the session's
            lifetime.
        outputs: the output names to fetch, in order.
        output_types: ``(shape, dtype)`` per output, or None where the input
            shapes do not fix it (such an output is bound afresh on every call).
        session_config: ORT session config entries (``add_session_config_entry``);
            ``intra_op_num_threads`` and ``inter_op_num_threads`` set the thread pools' sizes.
        share_key: sessions opened with the same key (the same graph,
            providers and config) share one ORT session; each keeps its own binding.
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        providers: list,
        parameters: Mapping[str, Parameter],
        outputs: Sequence[str],
        output_types: Sequence[tuple[tuple[int, ...], np.dtype] | None] | None = None,
        session_config: Mapping[str, str] | None = None,
        share_key: Hashable | None = None,
    ) -> None:
        self._session = _open(model, providers, session_config or {}, share_key)
        graph_inputs = {i.name for i in self._session.get_inputs()}
        self._parameters = {name: p for name, p in parameters.items() if name in graph_inputs}
        self._outputs = list(outputs)
        self.device = _device.device_of(providers)
        self.resident = _device.resident(self.device)
        self.input_names = graph_inputs - set(self._parameters)
        self._preallocate = False
        self._host_writes_seen = _parameter._host_writes_pending
        types = list(output_types) if output_types is not None else [None] * len(self._outputs)
        static = [t is not None and None not in t[0] for t in types]
        # A bound output keeps the OrtValue ONNX Runtime allocated for it, and the next run must
        # write a result of that same shape into it: outputs whose shape the input shapes do not
        # fix (a Loop's scan output, a Slice to a computed end) are bound afresh every call.
        self._rebound = tuple(name for name, fixed in zip(self._outputs, static) if not fixed)
        if not self.resident:
            on_cpu = all((p[0] if isinstance(p, tuple) else p) == "CPUExecutionProvider" for p in providers)
            fixed_types = [t for t in types if t is not None]
            known = not self._rebound
            # Writing into caller-owned arrays is only safe on the CPU, and only pays off for big
            # results: binding an output has a fixed cost that copying a small result stays under.
            size = sum(np.dtype(d).itemsize * int(np.prod(s)) for s, d in fixed_types) if known else 0
            self._preallocate = on_cpu and known and size >= _PREALLOCATE_BYTES
            if self._preallocate:
                self._output_types = [(tuple(shape), np.dtype(dtype).type) for shape, dtype in fixed_types]
        # An IOBinding holds one call's inputs and outputs: the creating thread keeps this one (no
        # lookup on the hot path); every other thread gets its own.
        self._owner = threading.get_ident()
        self._binding, self._bound = self._new_binding()
        self._local = threading.local()

    def _new_binding(self) -> tuple[Any, dict]:
        """An IOBinding with the parameters bound (on the CPU, by pointer) and, unless results
        are preallocated per call, the outputs; and its record of bound device values."""
        binding = self._session.io_binding()
        if not self.resident:
            for name, param in self._parameters.items():
                buffer = param.value
                binding.bind_input(name, "cpu", 0, buffer.dtype, list(buffer.shape), buffer.ctypes.data)
            if not self._preallocate:
                for name in self._outputs:
                    binding.bind_output(name, "cpu")
        return binding, {}

    def rebind_parameters(self) -> None:
        """Points a host session's bindings at its parameters' current buffers, after a
        parameter's buffer was replaced (device sessions bind device copies and refresh those
        themselves). Other threads' bindings are dropped and rebuilt on their next call."""
        if not self.resident:
            self._binding, self._bound = self._new_binding()
            self._local = threading.local()

    def _thread_binding(self) -> tuple[Any, dict]:
        if threading.get_ident() == self._owner:
            return self._binding, self._bound
        entry = getattr(self._local, "entry", None)
        if entry is None:
            entry = self._local.entry = self._new_binding()
        return entry

    def run(self, feeds: Mapping[str, Any], on_device: Sequence[bool] | None = None) -> list[Any]:
        """Runs the graph on ``feeds`` (the non-parameter inputs); returns the outputs in order.

        Args:
            feeds: numpy arrays or OrtValues by input name.
            on_device: per output, whether it stays an OrtValue on the session's
                device (default: every output comes back as a numpy array).
        """
        binding, bound = self._thread_binding()
        if self.resident:
            return self._run_resident(binding, bound, feeds, on_device)
        if _parameter._host_writes_pending != self._host_writes_seen:  # a device step wrote some parameter
            for param in self._parameters.values():
                if param._host_stale:
                    param._sync_host()
            self._host_writes_seen = _parameter._host_writes_pending
        self._bind_inputs(binding, feeds)
        results = None
        for name in self._rebound:
            binding.bind_output(name, "cpu")
        if self._preallocate:
            results = []
            for name, (shape, dtype) in zip(self._outputs, self._output_types):
                array = np.empty(shape, dtype)
                binding.bind_output(name, "cpu", 0, dtype, shape, array.ctypes.data)
                results.append(array)
        self._run(binding)
        if results is None:
            results = binding.copy_outputs_to_cpu()
        if on_device is not None and any(on_device):
            results = [_device.wrap(r) if keep else r for r, keep in zip(results, on_device)]
        return results

    def _run_resident(
        self, binding: Any, bound: dict, feeds: Mapping[str, Any], on_device: Sequence[bool] | None
    ) -> list[Any]:
        device = self.device
        for name, param in self._parameters.items():
            value = param._on_device(device)
            if bound.get(name) is not value:
                binding.bind_ortvalue_input(name, value)
                bound[name] = value
        self._bind_inputs(binding, feeds)
        keep = on_device if on_device is not None else [False] * len(self._outputs)
        # Rebound every call: ONNX Runtime would write the next results into a bound output.
        for name, stay in zip(self._outputs, keep):
            binding.bind_output(name, *(device if stay else _device.CPU))
        self._run(binding)
        return [value if stay else value.numpy() for value, stay in zip(_own_outputs(binding), keep)]

    def _bind_inputs(self, binding: Any, feeds: Mapping[str, Any]) -> None:
        """Binds the call's inputs: numpy arrays from host memory, OrtValues where they live."""
        for name, array in feeds.items():
            if name in self.input_names:
                if _device.is_ortvalue(array):
                    binding.bind_ortvalue_input(name, array)
                else:
                    binding.bind_cpu_input(name, array)

    def _run(self, binding) -> None:
        try:
            self._session.run_with_iobinding(binding)
        except Exception as err:
            refused = _validate.trip_count_failure(str(err))
            if refused is not None:
                raise refused from err
            raise RuntimeFailure(
                f"ONNX Runtime failed while running the graph: {_last_line(err)}. "
                "Check the input values and shapes; if they are right, please report this."
            ) from err


def _own_outputs(binding: Any) -> list[Any]:
    """The last run's outputs as OrtValues of their own.

    In onnxruntime 1.19 (the training build), ``IOBinding.get_outputs`` iterates
    the binding's output vector, which yields views of its slots: rebinding an
    output for the next call turned an OrtValue kept from this call into the
    next call's result. Indexing the vector copies each value out (as later
    onnxruntime versions do themselves).
    """
    outputs = binding._iobinding.get_outputs()
    return [ort.OrtValue(outputs[i]) for i in range(len(outputs))]


def _last_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[-1][:500] if text else type(err).__name__
