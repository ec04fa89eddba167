"""Where a FAISS index runs: the thin runner between `retrieval.device` and faiss-gpu.

With faiss-gpu installed (the `[gpu]` extra) and a GPU present, Flat and IVF indexes are cloned onto
GPU 0 to build and search; HNSW has no GPU version in FAISS and stays on the CPU. Indexes are always
written from, and read into, CPU memory: a GPU clone is a search-time copy.
"""

from __future__ import annotations

from typing import Any

from lvmae.retrieval.errors import RetrievalError

_resources: Any = None  # one faiss.StandardGpuResources per process: it owns scratch memory on the GPU


class PlacementError(RetrievalError):
    """retrieval.device asks for a GPU this process cannot use."""


def gpus_available() -> int:
    """GPUs FAISS can use: 0 without faiss-gpu (faiss-cpu has no GPU functions) or without a GPU."""
    import faiss

    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    return int(faiss.get_num_gpus())


def resolve(setting: str) -> str:
    """'cpu' or 'cuda' for retrieval.device = auto | cpu | cuda."""
    if setting == "cpu":
        return "cpu"
    found = gpus_available()
    if setting == "cuda" and not found:
        import faiss

        why = (
            "this FAISS build has no GPU support (faiss-cpu): install the [gpu] extra (faiss-gpu)"
            if not hasattr(faiss, "StandardGpuResources")
            else "FAISS sees no GPU"
        )
        raise PlacementError(f"retrieval.device = cuda, but {why}; or set retrieval.device=cpu")
    return "cuda" if found else "cpu"


def movable(kind: str) -> bool:
    """Whether FAISS has a GPU version of this kind."""
    return kind != "hnsw"


def to_device(index: Any, kind: str, device: str) -> tuple[Any, str]:
    """(`index` on `device`, where it runs): a GPU clone for kinds that have one, else the index
    itself on the CPU. A kind FAISS's GPU cloner refuses (a refine stage, in some builds) stays on
    the CPU rather than failing the search."""
    if device != "cuda" or not movable(kind):
        return index, "cpu"
    import faiss

    global _resources
    if _resources is None:
        _resources = faiss.StandardGpuResources()
    try:
        return faiss.index_cpu_to_gpu(_resources, 0, index), "cuda"
    except RuntimeError:
        if kind == "flat":
            raise
        return index, "cpu"


def to_cpu(index: Any) -> Any:
    """A CPU copy of a GPU index (to write it); a CPU index as it is."""
    import faiss

    if hasattr(faiss, "index_gpu_to_cpu") and type(index).__name__.startswith("Gpu"):
        return faiss.index_gpu_to_cpu(index)
    return index
