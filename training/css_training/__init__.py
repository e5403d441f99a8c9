"""css_training: offline simulation, training, continual learning and export (torch). Never imported onboard."""
