"""Where a model looks: maps of a Classifier's predictions (workflow), rendered (render), and how
faithful each method is (faithfulness); the maps themselves are the models' (models/maps.py).

Import the modules themselves: this package re-exports nothing, so that
`foveal.explanation.settings`, which the command line reads at start-up, does not pull in torch.
"""
