"""MLflow logging, model versions, aliases and lineage.

`tracking` records training runs, trials and models; `models` manages registered versions
and the `challenger` / `champion` aliases. Import the submodule you need: importing this
package does not import MLflow.
"""
