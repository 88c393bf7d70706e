"""Batch texturing: many meshes, one loaded model, an out folder with one GLB (+ texture PNG) per item (an
upscaled PNG for an "upscale" job; "restyle" jobs restyle a texture a mesh has) and a summary.json that makes
re-runs skip finished items. `meshdream batch` and `scripts/batch.py` (Blender) use it;
`run_batch_ray` runs the same batch on a Ray cluster."""

from .engine import BatchProgress, BatchReport, error_message, is_retryable, run_batch, run_item, texture_item
from .jobs import DONE, FAILED, SKIPPED, BatchItem, ItemResult, collect_items, read_jobs
from .ray_backend import run_batch_ray  # imports Ray only when called
from .summary import SUMMARY, Summary

__all__ = [
    "DONE",
    "FAILED",
    "SKIPPED",
    "SUMMARY",
    "BatchItem",
    "BatchProgress",
    "BatchReport",
    "ItemResult",
    "Summary",
    "collect_items",
    "error_message",
    "is_retryable",
    "read_jobs",
    "run_batch",
    "run_batch_ray",
    "run_item",
    "texture_item",
]
