"""DAG renderings and analyses: DAGVisualizer (ASCII, DOT, Mermaid, JSON, Cytoscape.js,
critical path, parallel groups), MermaidGenerator, visualize_pipeline.

Importing it (the package's `__init__` does) installs the renderer `DAG.print` draws with."""

from ..dataflow.graph import DAG, set_ascii_renderer
from .dag_visualizer import DAGVisualizer, visualize_pipeline
from .mermaid import MermaidGenerator

__all__ = ["DAG", "DAGVisualizer", "MermaidGenerator", "set_ascii_renderer", "visualize_pipeline"]
