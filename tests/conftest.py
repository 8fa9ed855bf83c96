"""Session fixtures shared across test files."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _start_slurm_run_first(request):
    """When the SLURM test is selected and can run, start its pipeline before every other test
    (it mostly waits on the scheduler) and let the test collect it at the end."""
    from tests.test_slurm import SLURM_AVAILABLE

    if SLURM_AVAILABLE and any(item.get_closest_marker("slurm") for item in request.session.items):
        request.getfixturevalue("slurm_run")


@pytest.fixture(scope="session")
def slurm_run(tmp_path_factory):
    from tests.test_slurm import start_slurm_run, stop_slurm_run

    run = start_slurm_run(tmp_path_factory.mktemp("slurm"))
    yield run
    stop_slurm_run(run)
