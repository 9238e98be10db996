"""The package: pyproject.toml's metadata, and the entry point from elsewhere.

`pip install -e .` is not run here (slow, and it needs the network); the
metadata is checked against the code instead: every third-party module that
mu_jax/, configs/ and main.py import is declared, the console script names a
function that exists, and the package data is included. main.py and the
console script's function run from another directory (cheap runs that stop at
config validation); `import mu_jax` from another directory without PYTHONPATH
is checked only where this environment has the package installed.
"""

import ast
import fnmatch
import glob
import os
import re
import subprocess
import sys
import tempfile
import tomllib

from absl.testing import absltest

import mu_jax

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FIRST_PARTY = {'mu_jax', 'configs', 'tests', 'benchmarks', 'tools', 'main'}
# Import name -> distribution name, where they differ.
_DISTRIBUTIONS = {
    'absl': 'absl-py',
    'ml_collections': 'ml-collections',
    'orbax': 'orbax-checkpoint',
    'tensorflow_datasets': 'tensorflow-datasets',
    'sklearn': 'scikit-learn',
    'PIL': 'pillow',
}
# Imported by the tests only when present (tests/benchmarks_test.py).
_OPTIONAL_IN_TESTS = {'torch'}
# The README's test command, which .ci/run runs verbatim.
_TEST_COMMAND = "pip install -e '.[test]' && python -m pytest tests"


def _pyproject():
  with open(os.path.join(_ROOT, 'pyproject.toml'), 'rb') as f:
    return tomllib.load(f)


def _normalize(name: str) -> str:
  """PEP 503 name: lower case, runs of -_. as one -."""
  return re.sub(r'[-_.]+', '-', name).lower()


def _requirement_name(requirement: str) -> str:
  return _normalize(re.match(r'\s*([A-Za-z0-9][A-Za-z0-9._-]*)',
                             requirement).group(1))


def _imported_modules(paths) -> dict[str, str]:
  """Top-level modules imported by the files -> a file importing each.

  Every import counts, inside functions and `try` blocks too: mu_jax turns a
  missing module into an error message, which does not make it optional.
  """
  modules = {}
  for path in paths:
    with open(path, encoding='utf-8') as f:
      tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and not node.level:
        names = [node.module]
      else:
        continue
      for name in names:
        modules.setdefault(name.split('.')[0], os.path.relpath(path, _ROOT))
  return modules


def _third_party(modules: dict[str, str]) -> dict[str, str]:
  """Distribution name -> a file importing it, for non-stdlib modules."""
  return {_normalize(_DISTRIBUTIONS.get(m, m)): where
          for m, where in modules.items()
          if m not in sys.stdlib_module_names and m not in _FIRST_PARTY}


def _run(args, cwd, python_path=None, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  env.pop('PYTHONPATH', None)
  if python_path:
    env['PYTHONPATH'] = python_path
  return subprocess.run(args, cwd=cwd, capture_output=True, text=True,
                        env=env, timeout=timeout)


class MetadataTest(absltest.TestCase):

  def test_project_table(self):
    project = _pyproject()['project']
    self.assertEqual(project['name'], 'mu-jax')
    self.assertEqual(project['requires-python'], '>=3.11')
    self.assertIn('Apache-2.0', project['license'])
    for path in (project['readme'], *project['license-files']):
      self.assertTrue(os.path.isfile(os.path.join(_ROOT, path)), path)
    with open(os.path.join(_ROOT, 'LICENSE')) as f:
      self.assertIn('Apache License\n                           Version 2.0',
                    f.read())
    # The version is mu_jax.__version__ (setuptools reads the attribute).
    self.assertIn('version', project['dynamic'])
    self.assertEqual(
        _pyproject()['tool']['setuptools']['dynamic']['version'],
        {'attr': 'mu_jax.__version__'})
    self.assertRegex(mu_jax.__version__, r'^\d+\.\d+\.\d+')
    test_extra = {_requirement_name(r)
                  for r in project['optional-dependencies']['test']}
    self.assertLessEqual({'pytest', 'hypothesis'}, test_extra)

  def test_every_dependency_is_pinned(self):
    project = _pyproject()['project']
    for requirement in (*project['dependencies'],
                        *project['optional-dependencies']['test']):
      self.assertRegex(requirement, r'(~=|==|>=)', requirement)

  def test_declares_every_third_party_import(self):
    paths = (glob.glob(f'{_ROOT}/mu_jax/**/*.py', recursive=True)
             + glob.glob(f'{_ROOT}/configs/*.py') + [f'{_ROOT}/main.py'])
    imported = _third_party(_imported_modules(paths))
    # Sanity: the scan sees the obvious ones, under their distribution names.
    self.assertLessEqual({'jax', 'flax', 'absl-py', 'scikit-learn',
                          'orbax-checkpoint', 'tensorflow-datasets'},
                         set(imported))
    declared = {_requirement_name(r)
                for r in _pyproject()['project']['dependencies']}
    missing = {name: where for name, where in imported.items()
               if name not in declared}
    self.assertEqual(missing, {}, 'imported but not in pyproject.toml '
                     '[project] dependencies (distribution: a file)')

  def test_declares_what_the_tests_import(self):
    paths = glob.glob(f'{_ROOT}/tests/*.py')
    imported = _third_party(_imported_modules(paths))
    project = _pyproject()['project']
    declared = {_requirement_name(r)
                for r in (*project['dependencies'],
                          *project['optional-dependencies']['test'])}
    missing = {name: where for name, where in imported.items()
               if name not in declared | _OPTIONAL_IN_TESTS}
    self.assertEqual(missing, {}, 'imported by the tests but in neither the '
                     'dependencies nor the test extra')

  def test_console_script_names_a_function(self):
    scripts = _pyproject()['project']['scripts']
    self.assertEqual(set(scripts), {'mu-jax'})
    module, _, function = scripts['mu-jax'].partition(':')
    path = os.path.join(_ROOT, *module.split('.')) + '.py'
    with open(path) as f:
      tree = ast.parse(f.read())
    functions = {node.name: node for node in tree.body
                 if isinstance(node, ast.FunctionDef)}
    self.assertIn(function, functions, f'{path} has no top-level {function}()')
    arguments = functions[function].args
    # Console scripts call it with no arguments.
    self.assertEqual(len(arguments.args) - len(arguments.defaults), 0)

  def test_packages_and_data_are_included(self):
    setuptools = _pyproject()['tool']['setuptools']
    include = setuptools['packages']['find']['include']
    packages = sorted(
        os.path.relpath(os.path.dirname(p), _ROOT).replace(os.sep, '.')
        for p in glob.glob(f'{_ROOT}/mu_jax/**/__init__.py', recursive=True)
        + [f'{_ROOT}/configs/__init__.py'])
    self.assertIn('mu_jax.datasets', packages)
    for package in packages:
      self.assertTrue(any(fnmatch.fnmatchcase(package, p) for p in include),
                      f'{package} is not installed (packages.find.include)')
    # Every folder of code is a package (find skips folders without one).
    for path in glob.glob(f'{_ROOT}/mu_jax/**/*.py', recursive=True):
      self.assertTrue(
          os.path.exists(os.path.join(os.path.dirname(path), '__init__.py')),
          f'{path} is outside a package')
    # Every data file inside mu_jax/ is package data.
    package_data = setuptools['package-data']
    for path in glob.glob(f'{_ROOT}/mu_jax/**/*', recursive=True):
      if (os.path.isdir(path) or path.endswith(('.py', '.pyc'))
          or '__pycache__' in path):
        continue
      package = os.path.relpath(os.path.dirname(path), _ROOT).replace(
          os.sep, '.')
      patterns = package_data.get(package, []) + package_data.get('*', [])
      self.assertTrue(
          any(fnmatch.fnmatchcase(os.path.basename(path), p)
              for p in patterns),
          f'{os.path.relpath(path, _ROOT)} is not in package-data')

  def test_ci_runs_the_readme_test_command(self):
    with open(os.path.join(_ROOT, 'README.md')) as f:
      readme = f.read()
    self.assertIn(f'\n{_TEST_COMMAND}\n', readme)
    with open(os.path.join(_ROOT, '.ci', 'run')) as f:
      ci = f.read().splitlines()
    self.assertIn(_TEST_COMMAND, ci)
    # CI's venv comes before it.
    self.assertLess(ci.index('. .venv-ci/bin/activate'),
                    ci.index(_TEST_COMMAND))
    with open(os.path.join(_ROOT, 'requirements.txt')) as f:
      requirements = [line.strip() for line in f
                      if line.strip() and not line.startswith('#')]
    self.assertEqual(requirements, ['-e .[test]'])


class FromAnotherDirectoryTest(absltest.TestCase):
  """The entry point finds its configs whatever the current directory.

  `--config.train.epochs=0` fails validation before any data is loaded or
  model trained: reaching that error proves the config file was found.
  """

  def setUp(self):
    super().setUp()
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    self.cwd = tmp.name

  def assert_one_line_error(self, proc, expected):
    self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
    last = proc.stderr.strip().splitlines()[-1]
    self.assertStartsWith(last, 'mu_jax: error:')
    self.assertIn(expected, last)

  def test_main_py_with_a_relative_config(self):
    proc = _run([sys.executable, os.path.join(_ROOT, 'main.py'),
                 '--config=configs/default.py:smoke',
                 '--config.train.epochs=0'], self.cwd)
    self.assert_one_line_error(proc, 'train.epochs is 0')

  def test_main_py_with_the_default_config(self):
    proc = _run([sys.executable, os.path.join(_ROOT, 'main.py'),
                 '--config.train.epochs=0'], self.cwd)
    self.assert_one_line_error(proc, 'train.epochs is 0')

  def test_console_script_function(self):
    # What the `mu-jax` script does: import the entry point and call it.
    module, _, function = _pyproject()['project']['scripts']['mu-jax'].partition(
        ':')
    code = (f'import sys; from {module} import {function}; '
            f'sys.argv[0] = "mu-jax"; sys.exit({function}())')
    proc = _run([sys.executable, '-c', code, '--config',
                 'configs/scrub.py:smoke', '--config.train.epochs=0'],
                self.cwd, python_path=_ROOT)
    self.assert_one_line_error(proc, 'train.epochs is 0')

  def test_help_exits_0_and_lists_methods_modes_and_fields(self):
    proc = _run([sys.executable, os.path.join(_ROOT, 'main.py'), '--help'],
                self.cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    for expected in ('--unlearn', 'salun', 'random_label', 'class_wise',
                     'configs/default.py', '3 ran but did not forget'):
      self.assertIn(expected, proc.stdout)

  def test_bare_pytest_collects_every_test(self):
    # pyproject.toml's [tool.pytest.ini_options]: the root on sys.path.
    proc = _run([sys.executable, '-m', 'pytest', '--collect-only', '-q',
                 '-p', 'no:cacheprovider'], _ROOT)
    self.assertEqual(proc.returncode, 0, proc.stdout[-3000:])
    self.assertRegex(proc.stdout, r'\n\d+ tests collected')
    self.assertNotIn('error', proc.stdout.splitlines()[-1])

  def test_missing_config_is_one_line(self):
    proc = _run([sys.executable, os.path.join(_ROOT, 'main.py'),
                 '--config=configs/nope.py:smoke'], self.cwd)
    self.assert_one_line_error(proc, "no such file 'configs/nope.py'")

  def test_installed_package(self):
    """Only where `pip install -e .` (or a wheel) put mu_jax on sys.path."""
    probe = _run([sys.executable, '-c',
                  'import importlib.util; '
                  'print(importlib.util.find_spec("mu_jax") is not None)'],
                 self.cwd)
    self.assertEqual(probe.returncode, 0, probe.stderr)
    if probe.stdout.strip() != 'True':
      self.skipTest('mu_jax is not installed in this environment '
                    "(pip install -e '.[test]')")
    proc = _run([sys.executable, '-c',
                 'import importlib.resources, importlib.util, mu_jax; '
                 'print(mu_jax.__version__); '
                 'print(importlib.util.find_spec("configs") is not None); '
                 'print(importlib.resources.files("mu_jax.datasets")'
                 '.joinpath("fashion_mnist_subset.npz").is_file())'],
                self.cwd)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(proc.stdout.split(), [mu_jax.__version__, 'True', 'True'])
    script = os.path.join(os.path.dirname(sys.executable), 'mu-jax')
    if not os.path.exists(script):
      self.skipTest(f'no {script}')
    proc = _run([script, '--config', 'configs/default.py:smoke',
                 '--config.train.epochs=0'], self.cwd)
    self.assert_one_line_error(proc, 'train.epochs is 0')


if __name__ == '__main__':
  absltest.main()
