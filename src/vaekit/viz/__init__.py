"""Pictures and the HTML report.

Array-level figures (`image_grid`, `reconstruction_grid`, `manifold_grid`, `latent_scatter`,
`training_curves`) take tensors or arrays already in display space and write one PNG each;
`plot_run` drives a trained model through them; `write_report` gathers a run's figures and
numbers into one HTML page. An application's own figures live with the application.
"""

from vaekit.viz.classes import conditional_figures, labelled_grid
from vaekit.viz.curves import training_curves
from vaekit.viz.images import (
    as_images,
    image_grid,
    manifold_grid,
    manifold_latents,
    reconstruction_grid,
    save_figure,
)
from vaekit.viz.latent import latent_projection, latent_scatter
from vaekit.viz.report import write_report
from vaekit.viz.run import plot_run

__all__ = [
    "as_images",
    "conditional_figures",
    "image_grid",
    "labelled_grid",
    "latent_projection",
    "latent_scatter",
    "manifold_grid",
    "manifold_latents",
    "plot_run",
    "reconstruction_grid",
    "save_figure",
    "training_curves",
    "write_report",
]
