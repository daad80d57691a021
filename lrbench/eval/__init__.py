"""Running networks: weights and checkpoints, devices and torchrun, precision, batching, the evaluation
engine that turns a protocol's crops into scores, and the identification search."""
