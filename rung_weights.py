"""Hyperband's networks between rungs: each configuration's weights at the end of a rung, saved beside the results
file before its row is appended (so a resumed run continues the networks an uninterrupted run continues), removed
once the searches end."""
import glob
import os

import torch

import files


class MissingWeightsError(Exception):
    """The weights a resumed run would continue are not beside its results file. One line."""


def weights_path(output, row, epochs):
    """The file of row's configuration trained for `epochs` epochs: hyperband-r2-c7-e6.pt."""
    return os.path.join(files.weights_folder(output),
                        f'{row["method"]}-r{row["repetition"]}-c{row["configuration"]}-e{epochs}.pt')


def load(output, row, epochs):
    """The parameters ({name: tensor}) of row's configuration trained for `epochs` epochs; MissingWeightsError if
    they are not saved."""
    path = weights_path(output, row, epochs)
    if not os.path.exists(path):
        raise MissingWeightsError(f'{path} is missing: the weights of {row["method"]} repetition {row["repetition"]} '
                                  f'configuration {row["configuration"]} after {epochs} epochs, which this run '
                                  'continues (--fresh starts over)')
    return torch.load(path, map_location='cpu')


def save(output, row, parameters):
    """Save the parameters row's configuration has after training to row['epochs'] epochs, whole (files.WriteError
    if that fails)."""
    os.makedirs(files.weights_folder(output), exist_ok=True)
    files.write_whole(weights_path(output, row, row['epochs']), lambda file: torch.save(parameters, file),
                      binary=True)


def remove(output):
    """Remove the saved weights, and their folder."""
    for path in glob.glob(os.path.join(glob.escape(files.weights_folder(output)), '*.pt')):
        os.unlink(path)
    folder = files.weights_folder(output)
    if os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)
