"""Every suite figure is written as a PNG from small synthetic inputs."""

import os
import tempfile

import numpy as np
from absl.testing import absltest

from mu_jax import plots

_PNG = b'\x89PNG\r\n\x1a\n'


def _summary(**means):
  return {'mean': means, 'std': {k: 0.5 for k in means}}


class PlotsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self._tmp = tempfile.TemporaryDirectory()
    self.addCleanup(self._tmp.cleanup)

  def assertPng(self, path):
    self.assertTrue(os.path.isfile(path), path)
    with open(path, 'rb') as f:
      self.assertEqual(f.read(8), _PNG)
    self.assertLess(os.path.getsize(path), 400_000)  # Small enough for docs/.

  def path(self, name):
    return os.path.join(self._tmp.name, 'sub', name)  # Folder is created.

  def test_metric_bars(self):
    row = dict(unlearn_acc=5.0, retain_acc=99.0, test_acc=90.0,
               mia_efficacy=12.0, avg_gap=1.0)
    summary = {'original': _summary(**row), 'retrain': _summary(**row),
               'finetune': _summary(**row), 'salun': _summary(**row),
               'neggrad': _summary()}  # Failed on every seed.
    self.assertPng(plots.metric_bars(
        summary, ['finetune', 'neggrad', 'salun', 'missing'],
        self.path('bars.png'),
        labels={'finetune': 'FT'}, title='t'))

  def test_accuracy_curves(self):
    curves = {m: {'step': [0, 1, 2, 5],
                  'forget_acc': [[99, 90, 80, 70], [98, 91, 82, 71]],
                  'retain_acc': [[99, 98, 97, 97], [99, 99, 98, 97]]}
              for m in ('finetune', 'neggrad', 'salun')}
    self.assertPng(plots.accuracy_curves(
        curves, self.path('curves.png'),
        reference={'forget_acc': 90.0, 'retain_acc': 98.0}))
    one_seed = {'ft': {'step': [0, 3], 'forget_acc': [[90, 80]],
                       'retain_acc': [[99, 98]]}}
    self.assertPng(plots.accuracy_curves(one_seed, self.path('one.png')))

  def test_tsne(self):
    rng = np.random.default_rng(0)
    panel = {'forget': rng.normal(size=(20, 8)),
             'forget_label': np.zeros(20, int),
             'retain': rng.normal(size=(30, 8)) + 3,
             'retain_label': np.arange(30) % 3}
    self.assertPng(plots.tsne({'original': panel, 'salun': panel},
                              self.path('tsne.png'), title='t',
                              iterations=250))

  def test_cka(self):
    layers = ['Conv_0', 'Conv_1', 'Dense_0', 'features']
    matrix = np.eye(4) * 0.5 + 0.4
    self.assertPng(plots.cka_heatmaps(
        {'retrain': matrix, 'salun': matrix}, layers, self.path('cka.png')))
    self.assertPng(plots.cka_layers(
        {'retrain': np.full((2, 4), 0.9), 'salun': np.full((3, 4), 0.95)},
        layers, self.path('layers.png'), title='t'))


if __name__ == '__main__':
  absltest.main()
