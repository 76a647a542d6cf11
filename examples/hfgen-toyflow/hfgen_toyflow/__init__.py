"""hfgen-toyflow: rectified flow on 2-D points, an example hfgen plugin.

Import the components from their modules (``from hfgen_toyflow.pipeline_toyflow import ToyFlowPipeline``); this
package imports nothing, so that ``hfgen list`` reading ``hfgen_toyflow.manifest`` stays cheap.
"""

__version__ = "0.1.0"
