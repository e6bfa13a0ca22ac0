"""tox plugin of this project: several environments may share one virtualenv.

tox 4 records the name of the environment that set a virtualenv up and rebuilds the
virtualenv when another name uses its directory. The backend environments
(`tensorflow`, `jax`, `torch`) need the same packages (all three backends, because the
tests load `.keras` files across backends), so they use `runner = shared-virtualenv`
and one `env_dir`: the name is left out of what is recorded, so TensorFlow, JAX and
PyTorch are installed once. Everything else tox records (interpreter, deps, package
deps, constraints) is still compared, so a change there still reinstalls.

Loaded by tox from the project root (an "inline plugin"); tox only, not the package.
"""

from contextlib import contextmanager

from tox.plugin import impl
from tox.tox_env.info import Info
from tox.tox_env.python.virtual_env.runner import VirtualEnvRunner


class _InfoWithoutEnvName(Info):
    @contextmanager
    def compare(self, value, section, sub_section=None):
        if section == "ToxEnv" and isinstance(value, dict):
            value = {key: item for key, item in value.items() if key != "name"}
        with super().compare(value, section, sub_section) as result:
            yield result


class SharedVirtualEnvRunner(VirtualEnvRunner):
    """A virtualenv runner whose directory may be shared by environments of one kind."""

    @staticmethod
    def id():
        return "shared-virtualenv"

    @property
    def cache(self):
        return _InfoWithoutEnvName(self.env_dir)


@impl
def tox_register_tox_env(register):
    register.add_run_env(SharedVirtualEnvRunner)
