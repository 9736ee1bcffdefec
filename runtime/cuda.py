"""CUDA execution with IO binding and, optionally, CUDA graphs over fixed buckets.

IO binding keeps the model's inputs and output on the device: the ids are copied up once per
batch and only the (B, num_labels) logits come back, instead of ONNX Runtime staging every
input and output through host memory itself.

CUDA graphs replay a captured launch sequence instead of launching ~100 kernels one by one, which
is most of the time at small batches. A graph is tied to fixed shapes and fixed device addresses,
so with `cuda_graph=True` every batch is padded up to the nearest bucket of BATCH_BUCKETS x
SEQUENCE_BUCKETS, each bucket gets its own persistent input/output buffers and its own graph
(ONNX Runtime's `gpu_graph_id` run option), captured on first use and replayed after. Those
buffers are shared by every call, so a lock makes filling them, the replay and reading the logits
back one step: an application calling `predict` from several threads would otherwise get another
thread's logits.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from bert14.artifact import INPUT_NAMES
from bert14.encode import Batch

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)
SEQUENCE_BUCKETS = (16, 32, 64, 128, 256, 512)


def _bucket(value: int, buckets: tuple[int, ...]) -> int:
    index = bisect.bisect_left(buckets, value)
    return buckets[min(index, len(buckets) - 1)]


@dataclass
class _Graph:
    graph_id: int
    inputs: dict[str, ort.OrtValue]
    output: ort.OrtValue
    binding: ort.IOBinding


class CudaRunner:
    """Runs bucketed batches on a CUDA session through IO binding (and CUDA graphs if asked)."""

    def __init__(
        self,
        session: ort.InferenceSession,
        num_labels: int,
        cuda_graph: bool,
        device_id: int = 0,
        device: str = "cuda",
        inputs: tuple[str, ...] = INPUT_NAMES,  # the model's, as its family names them (bert14/family.py)
    ) -> None:
        self.session = session
        self.inputs = inputs
        self.device = device  # "cpu" only in tests: the same binding logic on the CPU provider
        self.num_labels = num_labels
        self.cuda_graph = cuda_graph
        self.device_id = device_id
        self._graphs: dict[tuple[int, int], _Graph] = {}
        self._lock = threading.Lock()  # the graphs' buffers are shared between calls

    def __call__(self, batch: Batch) -> np.ndarray:
        if not self.cuda_graph:
            return self._bound(batch)
        rows, length = batch.input_ids.shape
        if rows > BATCH_BUCKETS[-1] or length > SEQUENCE_BUCKETS[-1]:
            return self._bound(batch)
        shape = (_bucket(rows, BATCH_BUCKETS), _bucket(length, SEQUENCE_BUCKETS))
        padded = {}
        for name, array in batch.feeds(self.inputs).items():
            padded[name] = np.zeros(shape, dtype=np.int64)  # (B', S') padding rows and columns are masked out
            padded[name][:rows, :length] = array
        with self._lock:
            graph = self._graphs.get(shape) or self._new_graph(shape)
            for name, array in padded.items():
                graph.inputs[name].update_inplace(array)
            options = ort.RunOptions()
            options.add_run_config_entry("gpu_graph_id", str(graph.graph_id))
            self.session.run_with_iobinding(graph.binding, options)
            return graph.output.numpy()[:rows].copy()

    def _bound(self, batch: Batch) -> np.ndarray:
        binding = self.session.io_binding()
        for name, array in batch.feeds(self.inputs).items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, self.device, self.device_id))
        binding.bind_output("logits", self.device, self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def _new_graph(self, shape: tuple[int, int]) -> _Graph:
        inputs = {
            name: ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype=np.int64), self.device, self.device_id)
            for name in self.inputs
        }
        inputs["attention_mask"].update_inplace(np.ones(shape, dtype=np.int64))
        output = ort.OrtValue.ortvalue_from_shape_and_type(
            [shape[0], self.num_labels], np.float32, self.device, self.device_id
        )
        binding = self.session.io_binding()
        for name, value in inputs.items():
            binding.bind_ortvalue_input(name, value)
        binding.bind_ortvalue_output("logits", output)
        graph = _Graph(len(self._graphs) + 1, inputs, output, binding)  # id 0 is ORT's default graph
        self._graphs[shape] = graph
        return graph
