"""fraudwatch: real-time card fraud scoring shared by the Lambda, the training job and the tools."""

__version__ = "0.1.0"
