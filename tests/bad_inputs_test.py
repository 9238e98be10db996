"""The catalogue of bad inputs: each ends in one line and exit status 2.

Every case runs the CLI (`mu_jax.cli.run`, what `python main.py` runs) on
the smoke config and checks: exit status 2; the last line of stderr starts
with `mu_jax: error:` and is its only line starting with 'mu_jax:'; no
traceback; no report.json; the checkpoint folder of an earlier good run
unchanged (paths, sizes, mtimes). Ctrl-C ends with one line `mu_jax:
interrupted; ...` and exit status 130, after the checkpoint being written is
complete (a second Ctrl-C while exiting changes nothing), and the same
command then resumes (log and report.json say so). A standard output that
cannot be written ends a finished run, its report written, quietly with
status 141 (a closed pipe) or with one line and status 2 (/dev/full).

Cheap: one helper process imports mu_jax and JAX once (`_serve`), then
forks a child per case, so a case costs what the CLI does before it fails
(most fail before any training) instead of a fresh Python and JAX start.
Faults a test cannot cause for real (a read-only folder as root) are
injected in the child at the system call or library call that meets them
(`_INJECTIONS`); a full disk is injected, and also real on a small tmpfs
where the test may mount one (`_small_file_system`; skipped elsewhere).
"""

import atexit
import errno
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from unittest import mock

import numpy as np
from absl.testing import absltest

from mu_jax import checkpoint as checkpoint_lib
from mu_jax import errors
from mu_jax import report as report_lib
from tests import test_util

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SMOKE = '--config=configs/default.py:smoke'
_TIMEOUT = 300  # Seconds per case; the slowest trains for a few seconds.


# ---------------------------------------------------------------------------
# The helper process: imports once, forks per case.


def _fault_paths(prefix, code, calls):
  """Makes the file-system calls named in `calls` fail under `prefix`."""

  def under(path):
    return os.path.abspath(os.fspath(path)).startswith(prefix)

  def fail(path):
    raise OSError(code, os.strerror(code), os.fspath(path))

  if 'makedirs' in calls:
    makedirs = os.makedirs

    def fake_makedirs(name, *args, **kwargs):
      if under(name):
        fail(name)
      return makedirs(name, *args, **kwargs)

    os.makedirs = fake_makedirs
  if 'mkstemp' in calls:
    mkstemp = tempfile.mkstemp

    def fake_mkstemp(*args, dir=None, **kwargs):  # pylint: disable=redefined-builtin
      if dir is not None and under(dir):
        fail(dir)
      return mkstemp(*args, dir=dir, **kwargs)

    tempfile.mkstemp = fake_mkstemp
  if 'statvfs' in calls:
    statvfs = os.statvfs

    def fake_statvfs(path):
      result = list(statvfs(path))
      if under(path):
        if code == errno.EROFS:
          result[8] |= os.ST_RDONLY  # f_flag
        elif code == errno.ENOSPC:
          result[4] = 0  # f_bavail
      return os.statvfs_result(result)

    os.statvfs = fake_statvfs


def _fail_checkpoint_writes(prefix):
  """Orbax's save fails as TensorStore does on a full disk (ValueError)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  save = ocp.CheckpointManager.save

  def fake_save(self, step, *args, **kwargs):
    directory = str(self.directory)
    if not directory.startswith(prefix):
      return save(self, step, *args, **kwargs)
    # What a write killed by ENOSPC leaves: Orbax's temporary folder.
    os.makedirs(f'{directory}/{step}.orbax-checkpoint-tmp/state')
    raise ValueError(
        'RESOURCE_EXHAUSTED: Error writing "params" in OCDBT database at '
        f'local file "{directory}/{step}.orbax-checkpoint-tmp/state": Failed '
        'to write 313233 bytes to file 7: No space left on device '
        "[os_error_code='28']")

  ocp.CheckpointManager.save = fake_save


def _interrupt_at_data_load():
  from mu_jax import data  # pylint: disable=g-import-not-at-top
  load = data.load

  def interrupted_load(config):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C.
    return load(config)

  data.load = interrupted_load


def _interrupt_twice():
  """Ctrl-C at data load, and again while the process exits (a double press)."""
  _interrupt_at_data_load()

  def again():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # Python runs its handler here, if it has one.

  atexit.register(again)  # Runs first: atexit runs the last registered first.


def _use_platforms(platforms):
  """As JAX_PLATFORMS=<platforms> (JAX, imported already, read it then)."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_platforms', platforms)


def _interrupt_first_save():
  """Ctrl-C arrives while the first checkpoint is being written."""
  from mu_jax import checkpoint  # pylint: disable=g-import-not-at-top
  checksums, calls = checkpoint._checksums, []  # pylint: disable=protected-access

  def interrupted_checksums(items):
    if not calls:
      calls.append(1)
      os.kill(os.getpid(), signal.SIGINT)
    return checksums(items)

  checkpoint._checksums = interrupted_checksums  # pylint: disable=protected-access


_INJECTIONS = {
    'read_only_makedirs': lambda p: _fault_paths(p, errno.EROFS, {'makedirs'}),
    'read_only_mkstemp': lambda p: _fault_paths(p, errno.EACCES, {'mkstemp'}),
    'read_only_statvfs': lambda p: _fault_paths(p, errno.EROFS, {'statvfs'}),
    'full_statvfs': lambda p: _fault_paths(p, errno.ENOSPC, {'statvfs'}),
    'full_checkpoint_dir': _fail_checkpoint_writes,
    'interrupt_at_data_load': lambda p: _interrupt_at_data_load(),
    'interrupt_twice': lambda p: _interrupt_twice(),
    'platforms': _use_platforms,
    'interrupt_first_save': lambda p: _interrupt_first_save(),
}


def _child(request):
  """Runs one case in a forked child; never returns."""
  code = 1
  try:
    for fd, name in ((1, 'stdout'), (2, 'stderr')):
      if request[name] == 'closed_pipe':  # Its reader has left.
        read_end, out = os.pipe()
        os.close(read_end)
      else:
        out = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
      os.dup2(out, fd)
      os.close(out)
    from mu_jax import cli  # pylint: disable=g-import-not-at-top
    if request.get('inject'):
      name, path = request['inject']
      _INJECTIONS[name](path)
    sys.argv = ['main.py', *request['argv']]
    try:
      cli.run()
      code = 0
    except SystemExit as e:
      if e.code is None or isinstance(e.code, int):
        code = e.code or 0
      else:
        print(e.code, file=sys.stderr)
    except BaseException:  # pylint: disable=broad-except
      import traceback  # pylint: disable=g-import-not-at-top
      traceback.print_exc()
    if request.get('run_atexit'):
      # What a process does at exit, which os._exit below skips.
      atexit._run_exitfuncs()  # pylint: disable=protected-access
  finally:
    try:
      sys.stdout.flush()
      sys.stderr.flush()
    finally:
      os._exit(code)  # pylint: disable=protected-access


def _serve():
  """Reads one JSON case per stdin line; answers {'rc', 'seconds'} per line.

  A case: {'argv': [...], 'stdout': path or 'closed_pipe', 'stderr': path,
  'inject': [name, path] or None, 'run_atexit': bool}.
  """
  # Ctrl-C must reach Python's handler even if the test runner ignores it.
  signal.signal(signal.SIGINT, signal.default_int_handler)
  # The imports every case pays otherwise (no JAX computation: forking a
  # process whose JAX backend runs is unsafe).
  import jax  # pylint: disable=g-import-not-at-top,unused-import
  import orbax.checkpoint  # pylint: disable=g-import-not-at-top,unused-import
  from configs import default  # pylint: disable=g-import-not-at-top,unused-import
  from mu_jax import cli  # pylint: disable=g-import-not-at-top,unused-import
  from mu_jax import pipeline  # pylint: disable=g-import-not-at-top,unused-import
  protocol = sys.stdout
  for line in sys.stdin:
    request = json.loads(line)
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
      _child(request)
    deadline = time.monotonic() + request.get('timeout', _TIMEOUT)
    while True:
      done, status = os.waitpid(pid, os.WNOHANG)
      if done:
        rc = os.waitstatus_to_exitcode(status)
        break
      if time.monotonic() > deadline:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        rc = 'timeout'
        break
      time.sleep(0.02)
    protocol.write(json.dumps({'rc': rc, 'seconds': round(
        time.perf_counter() - start, 2)}) + '\n')
    protocol.flush()


def _small_file_system(test, path, size):
  """Mounts a tmpfs of `size` at `path` for the test, or skips the test."""
  os.makedirs(path)
  try:
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}',
                              'tmpfs', path], capture_output=True, text=True,
                             check=False)
  except OSError as e:  # No mount command.
    test.skipTest(f'cannot mount a small file system here ({e})')
  if mounted.returncode:
    test.skipTest('cannot mount a small file system here (needs root where '
                  f'mount is allowed): {mounted.stderr.strip()}')
  test.addCleanup(subprocess.run, ['umount', '-l', path], check=False)
  return path


# ---------------------------------------------------------------------------
# The tests.


class _Result:

  def __init__(self, rc, stdout, stderr, seconds):
    self.rc, self.stdout, self.stderr, self.seconds = (rc, stdout, stderr,
                                                       seconds)
    lines = stderr.strip().splitlines()
    self.last = lines[-1] if lines else ''
    self.ours = [line for line in lines if line.startswith('mu_jax:')]


class BadInputsTest(absltest.TestCase):
  """The catalogue, through the CLI."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls._tmp = tempfile.TemporaryDirectory()
    cls.tmp = tmp = cls._tmp.name
    # Two CPU devices, whatever the machine: what --batch_size 31 refuses.
    env = dict(os.environ, JAX_PLATFORMS='cpu', JAX_NUM_CPU_DEVICES='2',
               PYTHONPATH=_ROOT)
    env.pop('XLA_FLAGS', None)
    cls.server = subprocess.Popen(
        [sys.executable, '-c',
         'from tests import bad_inputs_test as t; t._serve()'],
        cwd=_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=env)
    cls.count = 0
    cls.seconds = {}
    # The good run whose checkpoints and saved split every case must leave
    # as they are.
    cls.ck = f'{tmp}/ck'
    cls.good = cls.run_cli('good', ['--saved_data_path', f'{tmp}/saved'],
                           workdir=f'{tmp}/w/good')
    assert cls.good.rc == 0, cls.good.stderr[-3000:]
    split_file = glob.glob(f'{tmp}/saved/split_*.npz')[0]
    cls.split_name = os.path.basename(split_file)
    cls.retrain_folder = [f for f in glob.glob(f'{cls.ck}/*')
                          if '_all_' not in f][0]
    cls.original_folder = glob.glob(f'{cls.ck}/*_all_s0-*')[0]
    cls.before = test_util.file_snapshot(cls.ck)
    cls._make_bad_files(split_file)

  @classmethod
  def _make_bad_files(cls, split_file):
    tmp = cls.tmp
    with open(f'{tmp}/a_file', 'w') as f:
      f.write('not a folder')
    for name in ('corrupt', 'truncated', 'other_data'):
      os.makedirs(f'{tmp}/{name}')
    with open(f'{tmp}/corrupt/{cls.split_name}', 'wb') as f:
      f.write(b'not a split')
    with open(split_file, 'rb') as f:
      raw = f.read()
    with open(f'{tmp}/truncated/{cls.split_name}', 'wb') as f:
      f.write(raw[:len(raw) // 2])
    with np.load(split_file) as z:
      fields = {k: z[k] for k in z.files}
    fields['dataset_fingerprint'] = np.str_('0' * 64)
    np.savez(f'{tmp}/other_data/{cls.split_name}', **fields)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 8, 8, 1), np.uint8)
    np.savez(f'{tmp}/data.npz', train_images=images,
             train_labels=rng.integers(0, 4, 64), test_images=images[:32],
             test_labels=rng.integers(0, 4, 32))
    with open(f'{tmp}/data.npz', 'rb') as f:
      raw = f.read()
    with open(f'{tmp}/truncated.npz', 'wb') as f:
      f.write(raw[:len(raw) // 2])
    np.savez(f'{tmp}/one_class.npz', train_images=images,
             train_labels=np.zeros(64, np.int64), test_images=images[:32],
             test_labels=np.zeros(32, np.int64))
    np.savez(f'{tmp}/1x1.npz', train_images=images[:, :1, :1],
             train_labels=rng.integers(0, 4, 64),
             test_images=images[:32, :1, :1],
             test_labels=rng.integers(0, 4, 32))
    with open(f'{tmp}/syntax_error.py', 'w') as f:
      f.write('def get_config():\n  return dict(seed=(\n')
    # Config files import no mu_jax: they refuse a choice with a ValueError,
    # which the CLI prints as one line, as it does any ValueError raised in
    # a config file (a bad value in it, e.g. int('x')).
    with open(f'{tmp}/refuses.py', 'w') as f:
      f.write('def get_config():\n  raise ValueError("no such size")\n')
    with open(f'{tmp}/buggy.py', 'w') as f:
      f.write('def get_config():\n  return dict(seed=int("x"))\n')
    with open(f'{tmp}/no_table.py', 'w') as f:
      f.write('from configs import default\n\n\ndef get_config():\n'
              "  config = default.get_config('smoke')\n"
              '  del config.method_configs\n  return config\n')
    # The good run's checkpoints with the original model's checksums gone.
    shutil.copytree(cls.ck, f'{tmp}/ck_no_checksums')
    for step in glob.glob(f'{tmp}/ck_no_checksums/*_all_s0-*/*/checksums'):
      shutil.rmtree(step)

  @classmethod
  def tearDownClass(cls):
    cls.server.stdin.close()
    try:
      cls.server.wait(timeout=30)
    except subprocess.TimeoutExpired:
      cls.server.kill()
    cls._tmp.cleanup()
    print(f'\nbad_inputs_test: {cls.count} CLI runs; slowest: ' + ', '.join(
        f'{k} {v:.1f}s' for k, v in sorted(
            cls.seconds.items(), key=lambda kv: -kv[1])[:5]),
          file=sys.stderr)
    super().tearDownClass()

  @classmethod
  def run_cli(cls, name, args, *, config=_SMOKE, checkpoint_dir=None,
              workdir=None, inject=None, stdout=None, run_atexit=False):
    """Runs `main.py <config> --config.checkpoint_dir=... args` in a child.

    `stdout`: where the child's standard output goes (a path, or
    'closed_pipe'); None: a log file, returned as the result's stdout.
    """
    cls.count += 1
    out = f'{cls.tmp}/logs/{cls.count:03d}_{name}'
    os.makedirs(os.path.dirname(out), exist_ok=True)
    argv = [config, f'--config.checkpoint_dir={checkpoint_dir or cls.ck}',
            f'--workdir={workdir or f"{cls.tmp}/w/{name}"}', *args]
    request = {'argv': argv, 'stdout': stdout or f'{out}.out',
               'stderr': f'{out}.err', 'inject': inject,
               'run_atexit': run_atexit}
    cls.server.stdin.write(json.dumps(request) + '\n')
    cls.server.stdin.flush()
    reply = json.loads(cls.server.stdout.readline())
    cls.seconds[name] = reply['seconds']
    stdout = ''
    if request['stdout'] == f'{out}.out':
      with open(f'{out}.out') as f:
        stdout = f.read()
    with open(f'{out}.err') as f:
      stderr = f.read()
    return _Result(reply['rc'], stdout, stderr, reply['seconds'])

  def assert_one_line(self, result, expected, status=2,
                      prefix='mu_jax: error:'):
    self.assertEqual(result.rc, status, result.stderr[-3000:])
    self.assertNotIn('Traceback', result.stderr)
    self.assertStartsWith(result.last, prefix)
    self.assertEqual(result.ours, [result.last])
    self.assertIn(expected, result.last)

  def assert_bad(self, name, args, expected, **kwargs):
    """Runs a case and checks everything a bad input must satisfy."""
    workdir = kwargs.pop('workdir', f'{self.tmp}/w/{name}')
    result = self.run_cli(name, args, workdir=workdir, **kwargs)
    self.assert_one_line(result, expected)
    if os.path.isdir(workdir):
      self.assertEmpty([f for f in os.listdir(workdir)
                        if f.startswith('report.json')])
    self.assertEqual(test_util.file_snapshot(self.ck), self.before)
    return result

  def test_good_run_wrote_its_report(self):
    self.assertTrue(os.path.isfile(f'{self.tmp}/w/good/report.json'))
    self.assertEqual(self.good.ours, [])

  def test_exact_messages(self):
    """Two cases checked word for word: the checks can fail."""
    result = self.assert_bad('seed_not_whole', ['--seed', '1e23'], '')
    self.assertEqual(
        result.last,
        "mu_jax: error: --seed='1e23' is not valid (expected a whole number)")
    result = self.assert_bad('bad_variant', [], '',
                             config='--config=configs/default.py:huge')
    self.assertEqual(
        result.last,
        "mu_jax: error: --config: unknown config variant 'huge'; known: "
        'smoke')

  def test_flags_and_config_file(self):
    cases = {
        'seed_too_large': (['--seed', '4294967296'], 'seed is 4294967296'),
        'seed_negative': (['--seed=-1'], 'seed is -1'),
        'forget_class_not_int': (['--forget_class', 'a'],
                                 'expected class indices'),
        'lr_not_number': (['--lr', 'fast'], 'expected a number'),
        'unknown_override': (['--config.x.y=1'],
                             "--config.x.y=1: the config has no field 'x'"),
        'misspelt_override': (['--config.seeds=1'],
                              'did you mean "seed" instead of "seeds"?'),
        'bad_override_value': (['--config.seed=abc'],
                               'flag --config.seed=abc'),
        'unknown_flag': (['--nosuchflag'],
                         "Unknown command line flag 'nosuchflag'"),
        'positional_argument': (['extra'], 'unexpected arguments: extra'),
        # Random mode ignores the classes: it would forget random examples.
        'forget_class_in_random_mode': (
            ['--forget_class', '3'],
            '--forget_class 3 forgets whole classes, but this run forgets in '
            'random mode (random examples of every class); add --mode '
            'class_wise'),
        'forget_num_negative_in_config': (
            ['--config.split.forget_num=-5'],
            '--config.split.forget_num is -5; use a positive count, or 0'),
    }
    for name, (args, expected) in cases.items():
      with self.subTest(name):
        self.assert_bad(name, args, expected)
    with self.subTest('missing_config'):
      self.assert_bad('missing_config', [], "no such file 'configs/nope.py'",
                      config='--config=configs/nope.py')
    with self.subTest('config_syntax_error'):
      self.assert_bad('config_syntax_error', [],
                      f'--config: {self.tmp}/syntax_error.py, line 2: syntax '
                      "error ('(' was never closed); fix that file",
                      config=f'--config={self.tmp}/syntax_error.py')
    with self.subTest('config_refuses'):
      result = self.assert_bad('config_refuses', [], '',
                               config=f'--config={self.tmp}/refuses.py')
      self.assertEqual(result.last, 'mu_jax: error: --config: no such size')
    with self.subTest('config_value_error'):
      result = self.assert_bad('config_value_error', [], '',
                               config=f'--config={self.tmp}/buggy.py')
      self.assertEqual(result.last, 'mu_jax: error: --config: invalid '
                       "literal for int() with base 10: 'x'")
    with self.subTest('method_without_a_table'):
      # --method takes its section from the config's table; a config of
      # one's own without it is told how to add one.
      self.assert_bad('method_without_a_table', ['--method', 'scrub'],
                      'the config has no method_configs table to take '
                      "scrub's random section from; add one in the config "
                      'file with `config.method_configs = '
                      'default.method_table()`',
                      config=f'--config={self.tmp}/no_table.py')
    with self.subTest('method_alias_in_a_config_variant'):
      # The config knows module names only (aliases are mu_jax's).
      self.assert_bad('method_alias_in_a_config_variant', [],
                      "--config: unknown method 'GA'; this config has "
                      'sections for bad_teaching',
                      config='--config=configs/cifar10_resnet18.py:GA')

  def test_choices_and_split(self):
    cases = {
        'unknown_method': (['--method', 'nope'], "unknown method 'nope'"),
        'unknown_mode': (['--mode', 'sideways'], "unknown mode 'sideways'"),
        'unknown_dataset': (['--config.data.name=imagenet'],
                            "unknown dataset 'imagenet'"),
        'unknown_model': (['--config.model.name=vgg'], "unknown model 'vgg'"),
        'unknown_supervised_mode': (['--supervised_mode', 'bogus'],
                                    "unknown supervised_mode 'bogus'"),
        'unknown_data_augment': (['--data_augment', 'bogus'],
                                 "unknown data_augment 'bogus'"),
        'loss_weight_without_ssl': (['--loss_weight', '0.5'],
                                    'takes no self-supervised term'),
        'unknown_optimizer': (['--config.method.optim.name=rmsprop'],
                              "optim.name is 'rmsprop'"),
        'unknown_schedule': (['--config.train.optim.schedule=step'],
                             "optim.schedule is 'step'"),
        'unknown_cpu_convolutions': (['--config.mesh.cpu_convolutions=mkl'],
                                     'choose auto'),
        'unknown_method_variant': (['--method', 'neggrad',
                                    '--config.method.variant=x'],
                                   "unknown neggrad variant 'x'"),
        'class_out_of_range': (['--mode', 'class_wise', '--forget_class',
                                '10'], 'outside [0, 10)'),
        'forget_none': (['--forget_num', '0'], 'must be at least 1'),
        'forget_everything': (['--forget_num', '512'], 'retain'),
        'batch_larger_than_split': (['--batch_size', '4096'],
                                    'larger than the'),
        'batch_not_divisible': (['--batch_size', '31'], 'multiple of the 2'),
        'epochs_zero': (['--epoches', '0'], 'method.epochs is 0'),
    }
    for name, (args, expected) in cases.items():
      with self.subTest(name):
        self.assert_bad(name, args, expected)

  def test_valid_but_wrong_numbers(self):
    cases = {
        'lr_zero': (['--lr', '0'], 'optim.lr) is 0.0; it must be a positive'),
        'lr_negative': (['--lr=-0.01'], 'is -0.01; it must be a positive'),
        'lr_infinite': (['--lr', 'inf'], 'is inf; it must be a positive'),
        'train_lr_zero': (['--config.train.optim.lr=0'],
                          '--config.train.optim.lr is 0.0'),
        'num_devices_negative': (['--config.mesh.num_devices=-1'],
                                 'num_devices is -1'),
        'num_devices_too_many': (['--config.mesh.num_devices=3'],
                                 'only 2 devices are visible'),
        'max_train_negative': (['--config.data.max_train=-1'],
                               'max_train is -1'),
        'max_test_negative': (['--config.data.max_test=-1'],
                              'max_test is -1'),
        'guard_checks_zero': (['--config.guard.checks_per_epoch=0'],
                              'guard.checks_per_epoch=0 must be >= 1'),
        # NaN would have "diverged" every attempt and kept the original.
        'guard_lr_factor_nan': (['--config.guard.lr_factor=nan'],
                                'guard.lr_factor=nan must be a finite number'),
        'guard_without_validation': (['--config.split.val_fraction=0'],
                                     'need a validation set'),
    }
    for name, (args, expected) in cases.items():
      with self.subTest(name):
        self.assert_bad(name, args, expected)

  def test_checkpoints(self):
    tmp = self.tmp
    cases = {
        'init_from_missing': ([f'--config.init_from={tmp}/nothing'], {},
                              'no such checkpoint folder'),
        'init_from_retrain_model': (
            [f'--config.init_from={self.retrain_folder}'], {},
            'holds a retrain model'),
        'checkpoint_dir_is_a_file': (
            [], {'checkpoint_dir': f'{tmp}/a_file'},
            'cannot create checkpoint folder'),
        'checkpoint_dir_read_only': (
            [], {'checkpoint_dir': f'{tmp}/read_only_ck',
                 'inject': ['read_only_makedirs', f'{tmp}/read_only_ck']},
            'the file system is read-only'),
        'checkpoint_dir_full': (
            [], {'checkpoint_dir': f'{tmp}/full_ck',
                 'inject': ['full_checkpoint_dir', f'{tmp}/full_ck']},
            'no space left on the device; free some space or set '
            '--config.checkpoint_dir'),
        'checkpoint_without_checksums': (
            [], {'checkpoint_dir': f'{tmp}/ck_no_checksums'},
            'has no checksums (its checksums/ folder is missing: deleted, or '
            'saved by an older mu_jax), so it cannot be verified; delete it '
            'to start over, or pass '
            '--config.checkpoint.allow_unverified=True'),
        # Orbax's abandoned reads of the other arrays are quiet too (their
        # unraisable-exception noise: OneLineMessagesTest).
        'init_from_other_width': (
            [f'--config.init_from={self.original_folder}',
             '--config.model.width=16'],
            {'checkpoint_dir': f'{tmp}/ck_width'},
            'does not fit this model'),
    }
    for name, (args, kwargs, expected) in cases.items():
      with self.subTest(name):
        self.assert_bad(name, args, expected, **kwargs)
    self.assertFalse(os.path.exists(f'{tmp}/nothing'))
    # The failed save left no partial step behind.
    self.assertEqual(
        glob.glob(f'{tmp}/full_ck/*/*orbax-checkpoint-tmp*'), [])

  def test_saved_split_and_data(self):
    tmp = self.tmp
    cases = {
        'saved_split_corrupt': (
            ['--saved_data_path', f'{tmp}/corrupt'], {}, 'Cannot read split'),
        'saved_split_truncated': (
            ['--saved_data_path', f'{tmp}/truncated'], {},
            'Cannot read split'),
        'saved_split_other_data': (
            ['--saved_data_path', f'{tmp}/other_data'], {},
            'made for a different dataset'),
        'saved_data_path_is_a_file': (
            ['--saved_data_path', f'{tmp}/a_file'], {},
            'cannot save the split in'),
        'saved_data_path_read_only': (
            ['--saved_data_path', f'{tmp}/ro_saved'],
            {'inject': ['read_only_mkstemp', f'{tmp}/ro_saved']},
            'permission denied'),
        'npz_truncated': (
            ['--config.data.source=npz', f'--config.data.path={tmp}/'
             'truncated.npz'], {}, 'truncated or corrupt'),
        'npz_one_class': (
            ['--config.data.source=npz', f'--config.data.path={tmp}/'
             'one_class.npz'], {}, 'only 1 class'),
        'npz_missing': (
            ['--config.data.source=npz', f'--config.data.path={tmp}/none.npz'],
            {}, 'not found'),
        'npz_images_too_small': (
            ['--config.data.source=npz', f'--config.data.path={tmp}/1x1.npz'],
            {}, f"{tmp}/1x1.npz holds 1x1 images, but model 'cnn' needs at "
            'least 4x4'),
    }
    for name, (args, kwargs, expected) in cases.items():
      with self.subTest(name):
        self.assert_bad(name, args, expected, **kwargs)

  def test_workdir(self):
    tmp = self.tmp
    cases = {
        'workdir_is_a_file': ({'workdir': f'{tmp}/a_file'},
                              'it is a file, not a folder'),
        'workdir_under_a_file': ({'workdir': f'{tmp}/a_file/run'},
                                 'is a file, not a folder'),
        'workdir_read_only': (
            {'workdir': f'{tmp}/ro_w/run',
             'inject': ['read_only_statvfs', f'{tmp}']},
            'read-only file system'),
        'workdir_disk_full': (
            {'workdir': f'{tmp}/full_w/run',
             'inject': ['full_statvfs', f'{tmp}']},
            'no space left on the device'),
        # Refused before training, not at the first write after it.
        'workdir_name_too_long': (
            {'workdir': f'{tmp}/w/{"a" * 300}/run'},
            f'the folder name {"a" * 20}... is 300 bytes long, more than the '),
    }
    for name, (kwargs, expected) in cases.items():
      with self.subTest(name):
        self.assert_bad(name, [], expected, **kwargs)
    self.assertFalse(os.path.exists(f'{tmp}/w/{"a" * 300}'))

  def test_diverging_loss_without_guard_rails(self):
    self.assert_bad('diverging', ['--lr', '1e30',
                                  '--config.guard.enabled=False'],
                    'the run diverged')

  def test_small_file_systems(self):
    """A real full disk: one line, no Orbax log lines, no temp folder left."""
    tmp = self.tmp
    full = _small_file_system(self, f'{tmp}/disk_full', '200k')
    os.makedirs(f'{full}/ck')
    filler = os.open(f'{full}/filler', os.O_WRONLY | os.O_CREAT)
    try:
      with self.assertRaises(OSError):  # Until ENOSPC.
        while True:
          os.write(filler, b'\0' * 4096)
    finally:
      os.close(filler)
    little = _small_file_system(self, f'{tmp}/disk_100k', '100k')
    for name, folder in (('checkpoint_dir_disk_full', f'{full}/ck'),
                         ('checkpoint_dir_100k_free', f'{little}/ck')):
      with self.subTest(name):
        result = self.assert_bad(name, [], f'cannot write checkpoint {folder}/',
                                 checkpoint_dir=folder)
        self.assertIn('no space left on the device; free some space or set '
                      '--config.checkpoint_dir', result.last)
        # Orbax's own report of the failed write stays out of the terminal.
        self.assertNotIn('RESOURCE_EXHAUSTED', result.stderr)
        self.assertNotIn('Errno 28', result.stderr)
        self.assertEqual(glob.glob(f'{folder}/**/*orbax-checkpoint-tmp*',
                                   recursive=True), [])

  def test_missing_jax_backend(self):
    cases = {'nosuch': 'Unable to initialize backend'}
    if not os.path.exists('/dev/nvidia0'):  # Else CUDA may well be there.
      cases['cuda'] = 'no device of that kind is visible'
    for platforms, reason in cases.items():
      with self.subTest(platforms):
        result = self.assert_bad(
            f'jax_platforms_{platforms}', [],
            f'JAX_PLATFORMS={platforms!r}: no such backend on this machine',
            inject=['platforms', platforms])
        self.assertIn(reason, result.last)
        self.assertIn('unset JAX_PLATFORMS (or set it to cpu)', result.last)

  def test_standard_output_that_cannot_be_written(self):
    """The run finishes and writes its report; the summary is lost."""
    for name, stdout in (('stdout_closed_pipe', 'closed_pipe'),
                         ('stdout_full_device', '/dev/full')):
      with self.subTest(name):
        workdir = f'{self.tmp}/w/{name}'
        result = self.run_cli(name, [], workdir=workdir, stdout=stdout)
        if stdout == 'closed_pipe':  # Quietly, as a process ended by SIGPIPE.
          self.assertEqual(result.rc, 141, result.stderr[-3000:])
          self.assertNotIn('Traceback', result.stderr)
          self.assertEqual(result.ours, [])
        else:
          self.assert_one_line(
              result, 'cannot write to the standard output: no space left on '
              'the device; free some space or redirect it elsewhere')
        self.assertIn('report.json', os.listdir(workdir))
        self.assertEqual(glob.glob(f'{workdir}/*.tmp*'), [])

  def test_ctrl_c_twice(self):
    """A second Ctrl-C while the process exits changes nothing."""
    result = self.run_cli('interrupt_twice', [],
                          inject=['interrupt_twice', ''], run_atexit=True)
    self.assert_one_line(result, 'resumes', status=130,
                         prefix='mu_jax: interrupted;')
    self.assertNotIn('Exception ignored', result.stderr)
    self.assertEqual(test_util.file_snapshot(self.ck), self.before)

  def test_ctrl_c_before_training(self):
    result = self.run_cli('interrupt_at_data_load', [],
                          inject=['interrupt_at_data_load', ''])
    self.assert_one_line(result, 'resumes', status=130,
                         prefix='mu_jax: interrupted;')
    self.assertEqual(test_util.file_snapshot(self.ck), self.before)

  def test_ctrl_c_during_a_save_then_resume(self):
    """The step being saved is finished first; the rerun resumes from it."""
    ck, workdir = f'{self.tmp}/ck_resume', f'{self.tmp}/w/resume'
    args = ['--config.train.epochs=2']
    result = self.run_cli('interrupt_first_save', args, checkpoint_dir=ck,
                          workdir=workdir,
                          inject=['interrupt_first_save', ''])
    self.assert_one_line(result, 'resumes', status=130,
                         prefix='mu_jax: interrupted;')
    self.assertFalse(os.path.exists(f'{workdir}/report.json'))
    original = glob.glob(f'{ck}/*_all_s0-*')[0]
    self.assertEqual(glob.glob(f'{original}/*tmp*'), [])
    with checkpoint_lib.Checkpointer(original) as checkpointer:
      meta = checkpointer.latest_meta()
    self.assertEqual((meta['epoch'], meta['done']), (1, False))

    resumed = self.run_cli('resume', args, checkpoint_dir=ck,
                           workdir=workdir)
    self.assertEqual(resumed.rc, 0, resumed.stderr[-3000:])
    self.assertIn(f'resuming an original model in {original} from epoch 1',
                  resumed.stderr)
    with open(f'{workdir}/report.json') as f:
      timings = json.load(f)['timings']
    self.assertEqual(timings['original_resumed_from_epoch'], 1)
    self.assertFalse(timings['original_reused'])
    self.assertEqual(timings['retrain_resumed_from_epoch'], 0)


class OneLineMessagesTest(absltest.TestCase):
  """The file-system errors' messages, in-process."""

  def test_errno_to_message(self):
    cases = {
        errno.ENOSPC: 'cannot write /d/x: no space left on the device; free '
                      'some space or pick another',
        errno.EROFS: 'cannot write /d/x: the file system is read-only; pick '
                     'another',
        errno.EACCES: 'cannot write /d/x: permission denied; pick another',
        errno.ENOTDIR: 'cannot write /d/x: a part of the path is a file, not '
                       'a folder; pick another',
    }
    for code, expected in cases.items():
      with self.subTest(errno.errorcode[code]):
        error = errors.file_error(OSError(code, os.strerror(code), '/d/x'),
                                  None, 'cannot write', 'pick another')
        self.assertIsInstance(error, errors.MuJaxError)
        self.assertEqual(str(error), expected)
        self.assertEqual(error.errno, code)
    # TensorStore's errors (raised by Orbax as ValueError) carry the errno
    # in their text.
    error = errors.file_error(
        ValueError("RESOURCE_EXHAUSTED: ... No space left on device "
                   "[os_error_code='28']"), '/ck/3', 'cannot write', 'fix')
    self.assertEqual(error.errno, errno.ENOSPC)
    # Anything else is a bug and keeps its traceback.
    self.assertIsNone(errors.file_error(ValueError('a bug'), '/x', 'a', 'b'))
    self.assertIsNone(errors.file_error(
        OSError(errno.EBADF, 'Bad file descriptor'), '/x', 'a', 'b'))

  def test_orbax_noise_is_kept_out_unless_verbose(self):
    # In its own process: mu_jax.cli defines absl flags (--batch_size...)
    # that a benchmark module imported by another test may hold already.
    script = textwrap.dedent("""
        import logging as std_logging
        import sys
        import types
        from unittest import mock
        from absl import flags
        from absl.testing import flagsaver
        from orbax.checkpoint._src.serialization import serialization
        from mu_jax import cli
        flags.FLAGS(['test'])
        # What a failed restore leaves (a checkpoint of another width):
        # Orbax's reads of the other arrays, reported when collected.
        coroutine = serialization._read_array_index_and_device_put(
            [], (), None, global_shape=(), new_shard_shape=(), dtype=None,
            byte_limiter=None, strict=True, dll=None, memory_kind=None)
        orbax_noise = types.SimpleNamespace(
            exc_type=Exception, exc_value=Exception(
                'Encountered error while reading array index: ()'),
            exc_traceback=None, err_msg=None, object=coroutine)
        other = types.SimpleNamespace(
            exc_type=ValueError, exc_value=ValueError('a bug'),
            exc_traceback=None, err_msg=None, object=print)
        record = std_logging.LogRecord(
            'absl', std_logging.ERROR,
            '/site-packages/orbax/checkpoint/future.py', 387,
            'RESOURCE_EXHAUSTED: Error writing "params"', (), None)
        seen = []
        with mock.patch.object(sys, 'unraisablehook', seen.append):
          cli._quiet_closed_event_loops()
          sys.unraisablehook(orbax_noise)
          sys.unraisablehook(other)
          assert seen == [other], seen
          assert not cli._DropLibraryInfo().filter(record)
          with flagsaver.flagsaver(verbosity=1):  # Shows both.
            sys.unraisablehook(orbax_noise)
            assert seen == [other, orbax_noise], seen
            assert cli._DropLibraryInfo().filter(record)
        coroutine.close()
        print('checked')
        """)
    proc = subprocess.run([sys.executable, '-c', script], cwd=_ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=_ROOT))
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn('checked', proc.stdout)

  def test_report_on_a_full_disk_leaves_no_file(self):
    with tempfile.TemporaryDirectory() as tmp:
      path = f'{tmp}/report.json'
      full = OSError(errno.ENOSPC, 'No space left on device')
      with mock.patch.object(os, 'replace', side_effect=full):
        with self.assertRaisesRegex(errors.FileSystemError,
                                    f'cannot write {path}: no space left'):
          report_lib.write_json(path, {'a': 1})
      self.assertEqual(os.listdir(tmp), [])

  def test_output_folder_checks_create_nothing(self):
    with tempfile.TemporaryDirectory() as tmp:
      report_lib.check_output_folder(f'{tmp}/a/b', '--workdir')
      self.assertEqual(os.listdir(tmp), [])
      open(f'{tmp}/f', 'w').close()
      with self.assertRaisesRegex(errors.FileSystemError,
                                  'it is a file, not a folder'):
        report_lib.check_output_folder(f'{tmp}/f', '--workdir')


if __name__ == '__main__':
  absltest.main()
