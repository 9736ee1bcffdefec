"""Triton Python backend: texts -> the model's inputs (bert14's tokenizer).

    text       BYTES [1] per batch item, UTF-8        text_pair optional, the same
    the model's inputs, by its family: input_ids, attention_mask[, token_type_ids]
               INT64 [L]  padded to the batch's bucket length

Rows are padded to the next bucket length of the longest row in the request (BUCKETS), not to each
request's exact longest: Triton's dynamic batcher can only batch requests whose shapes are equal,
and buckets make that likely while padding stays under 2x. The tokenizer.json beside this file is
the artifact's tokenizer as bert14 builds it (bert14/tokenizer.py); truncation is the model's
positions, longest segment first, as bert14's runtime does.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

BUCKETS = (16, 32, 64, 128, 256, 512)


def bucket(length, max_length):
    return min(next((b for b in BUCKETS if b >= length), length), max(max_length, length))


class TritonPythonModel:
    def initialize(self, args):
        here = Path(__file__).parent
        settings = json.loads((here / "bert14_tokenize.json").read_text(encoding="utf-8"))
        self.max_length = int(settings["max_length"])
        self.pad_id = int(settings["pad_id"])
        # The model's inputs, as its family names them (bert14/family.py); older repositories: BERT's.
        self.inputs = list(settings.get("inputs", ("input_ids", "attention_mask", "token_type_ids")))
        self.tokenizer = Tokenizer.from_file(str(here / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_length, strategy="longest_first")

    def _texts(self, request, name):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            return None
        values = tensor.as_numpy().reshape(-1)
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                texts = self._texts(request, "text")
                pairs = self._texts(request, "text_pair")
                inputs = texts if pairs is None else list(zip(texts, pairs, strict=True))
                encodings = self.tokenizer.encode_batch(inputs)
            except (UnicodeDecodeError, ValueError, TypeError) as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"text: {exc}")))
                continue
            width = bucket(max((len(e.ids) for e in encodings), default=1), self.max_length)
            ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)  # (N, L)
            mask = np.zeros((len(encodings), width), dtype=np.int64)  # (N, L)
            types = np.zeros((len(encodings), width), dtype=np.int64)  # (N, L)
            for row, e in enumerate(encodings):
                ids[row, : len(e.ids)] = e.ids
                mask[row, : len(e.ids)] = 1
                types[row, : len(e.ids)] = e.type_ids
            arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            outputs = [pb_utils.Tensor(name, arrays[name]) for name in self.inputs]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
