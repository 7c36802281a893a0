from .pipeline_fuse import FUSEPipeline, FUSEPipelineOutput

__all__ = ["FUSEPipeline", "FUSEPipelineOutput"]
