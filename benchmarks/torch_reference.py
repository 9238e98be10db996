"""The PyTorch reference: the same models and unlearning loops, plain PyTorch.

Written the way the reference repositories write them (SalUn's
`unlearn/RL.py` and `generate_mask.py`, `meghdadk/SCRUB`'s `train_distill`,
`vikram2000b/bad-teaching-unlearning`'s `unlearn.py`): eager modules,
`torch.optim`, `loss.backward()` per batch, teachers under `torch.no_grad()`.
Two things favour PyTorch over those repositories, so that the comparison is
conservative: the images are normalised float tensors in memory (no
`DataLoader`, no PIL transforms), and batches are plain index gathers.

The work is given by `mu_jax_side.method_workload` (epochs, phases, steps,
batch sizes, optimizer and loss settings), so both frameworks run the same
number of updates on the same batch shapes. torch is optional: nothing in
mu_jax imports this module.
"""

import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

MODELS = ('cnn', 'resnet8', 'resnet20', 'resnet18')  # As in mu_jax.models.


def set_threads(num: int):
  """Intra-op threads (one per core is PyTorch's own default)."""
  torch.set_num_threads(num)


class CNN(nn.Module):
  """mu_jax's cnn: conv3x3(w)-pool, conv3x3(2w)-pool, dense(4w), dense."""

  def __init__(self, num_classes: int, width: int, shape: tuple[int, ...]):
    super().__init__()
    height, wide, channels = shape
    self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
    self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
    self.fc1 = nn.Linear(2 * width * (height // 4) * (wide // 4), 4 * width)
    self.fc2 = nn.Linear(4 * width, num_classes)

  def forward(self, x):
    x = F.max_pool2d(F.relu(self.conv1(x)), 2)
    x = F.max_pool2d(F.relu(self.conv2(x)), 2)
    return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


class BasicBlock(nn.Module):
  """Two 3x3 convs with a residual; 1x1 projection when the shape changes."""

  def __init__(self, c_in: int, c_out: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(c_out)
    self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(c_out)
    self.shortcut = nn.Sequential()
    if stride != 1 or c_in != c_out:
      self.shortcut = nn.Sequential(
          nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet(nn.Module):
  """mu_jax's ResNets (models/resnet.py): 3x3 stem, BasicBlocks, mean pool."""

  def __init__(self, num_classes: int, channels: int,
               stage_sizes: tuple[int, ...], widths: tuple[int, ...]):
    super().__init__()
    self.stem = nn.Sequential(
        nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False),
        nn.BatchNorm2d(widths[0]), nn.ReLU())
    blocks, c_in = [], widths[0]
    for stage, (size, width) in enumerate(zip(stage_sizes, widths)):
      for block in range(size):
        blocks.append(BasicBlock(c_in, width,
                                 2 if stage > 0 and block == 0 else 1))
        c_in = width
    self.blocks = nn.Sequential(*blocks)
    self.fc = nn.Linear(c_in, num_classes)

  def forward(self, x):
    return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


_RESNETS = {'resnet8': ((1, 1, 1), (16, 32, 64)),
            'resnet20': ((3, 3, 3), (16, 32, 64)),
            'resnet18': ((2, 2, 2, 2), (64, 128, 256, 512))}


def make_model(name: str, num_classes: int, width: int,
               shape: tuple[int, ...], channels_last: bool) -> nn.Module:
  """The reference model of mu_jax's model `name` (`width`: the CNN's)."""
  if name not in MODELS:
    raise ValueError(f'the PyTorch reference has no model {name!r} '
                     f'({", ".join(MODELS)})')
  if name == 'cnn':
    model = CNN(num_classes, width, shape)
  else:
    model = ResNet(num_classes, shape[-1], *_RESNETS[name])
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
  return model


def to_tensor(images: np.ndarray, channels_last: bool) -> torch.Tensor:
  """uint8 NHWC -> normalised float NCHW, once, as a dataset in memory."""
  # A writable copy: torch refuses read-only numpy buffers.
  x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float()
  x = (x - 127.5) / 64.0
  if channels_last:
    return x.contiguous(memory_format=torch.channels_last)
  return x.contiguous()


def make_optimizer(params, spec: dict[str, Any]) -> torch.optim.Optimizer:
  """torch SGD or Adam with L2 weight decay, constant rate."""
  if spec.get('schedule', 'constant') != 'constant':
    raise ValueError('the PyTorch reference runs constant learning rates')
  if spec['name'] == 'sgd':
    return torch.optim.SGD(params, lr=spec['lr'], momentum=spec['momentum'],
                           weight_decay=spec['weight_decay'])
  return torch.optim.Adam(params, lr=spec['lr'],
                          weight_decay=spec['weight_decay'])


def step_throughput(model_name: str, batch_size: int,
                    shape: tuple[int, ...], optim_spec: dict[str, Any], *,
                    steps: int, warmup: int, channels_last: bool,
                    num_classes: int = 10, width: int = 32,
                    seed: int = 0) -> dict[str, Any]:
  """Times supervised train steps, batches gathered from memory.

  Returns:
    {'img_per_s' (median step), 'step_seconds'}.
  """
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  n = (warmup + steps) * batch_size
  x = to_tensor(rng.integers(0, 256, (n, *shape), np.uint8), channels_last)
  y = torch.from_numpy(rng.integers(0, num_classes, n).astype(np.int64))
  model = make_model(model_name, num_classes, width, shape, channels_last)
  opt = make_optimizer(model.parameters(), optim_spec)
  model.train()
  order = torch.randperm(n)
  times = []
  for k in range(warmup + steps):
    start = time.perf_counter()
    idx = order[k * batch_size:(k + 1) * batch_size]
    opt.zero_grad()
    loss = F.cross_entropy(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
    loss.item()  # The driver reads metrics back every step too.
    times.append(time.perf_counter() - start)
  seconds = np.asarray(times[warmup:])
  return {'img_per_s': float(batch_size / np.median(seconds)),
          'step_seconds': [float(s) for s in seconds]}


class _Batches:
  """Shuffled batches of one split, reshuffled every pass (a DataLoader)."""

  def __init__(self, x, y, batch_size, generator):
    self.x, self.y, self.batch_size, self.gen = x, y, batch_size, generator
    self.order, self.k = None, 0

  def next(self):
    per_pass = len(self.y) // self.batch_size
    if self.order is None or self.k == per_pass:
      self.order, self.k = torch.randperm(len(self.y), generator=self.gen), 0
    idx = self.order[self.k * self.batch_size:(self.k + 1) * self.batch_size]
    self.k += 1
    return self.x[idx], self.y[idx]


def _kd(student, teacher, temperature):
  """SCRUB's DistillKL: batch-mean KL(teacher || student) * T**2."""
  return F.kl_div(F.log_softmax(student / temperature, 1),
                  F.softmax(teacher / temperature, 1),
                  reduction='batchmean') * temperature ** 2


def _saliency_mask(model, forget_x, forget_y, batch_size, ratio):
  """SalUn's generate_mask: forget-set CE gradient, global top |g| kept."""
  model.eval()
  model.zero_grad()
  for start in range(0, len(forget_y), batch_size):
    loss = F.cross_entropy(model(forget_x[start:start + batch_size]),
                           forget_y[start:start + batch_size],
                           reduction='sum')
    loss.backward()
  grads = [p.grad.detach().abs().flatten() for p in model.parameters()]
  flat = torch.cat(grads)
  k = int(ratio * flat.numel())
  keep = torch.zeros_like(flat)
  keep[torch.topk(flat, k).indices] = 1.0
  masks, start = [], 0
  for p in model.parameters():
    masks.append(keep[start:start + p.numel()].view_as(p))
    start += p.numel()
  model.zero_grad()
  model.train()
  return masks


def run_method(work: dict[str, Any], images: np.ndarray, labels: np.ndarray,
               channels_last: bool, seed: int = 0) -> dict[str, Any]:
  """Runs one unlearning method's loop as `work` describes it.

  Args:
    work: `mu_jax_side.method_workload(...)`.
    images: uint8 [N, H, W, C], the whole train set.
    labels: int [N].
    channels_last: PyTorch's faster CPU memory format.
    seed: seeds the model, the batch order and the random labels.

  Returns:
    {'wall_seconds' (data to tensors, setup and every step), 'steps'}.
  """
  method, hp = work['method'], work['hparams']
  if (hp.get('variant', 'canonical') != 'canonical' or
      hp.get('loop', 'sequential') != 'sequential'):
    raise ValueError(f'the PyTorch reference runs the default (canonical, '
                     f'sequential) loops only, not {hp} for {method}')
  torch.manual_seed(seed)
  gen = torch.Generator().manual_seed(seed)
  start = time.perf_counter()
  x = to_tensor(images, channels_last)
  y = torch.from_numpy(labels.astype(np.int64))
  forget = torch.from_numpy(np.array(work['split']['forget']))
  retain = torch.from_numpy(np.array(work['split']['retain']))
  is_forget = torch.zeros(len(y))
  is_forget[forget] = 1.0
  splits = {'forget': (x[forget], y[forget]), 'retain': (x[retain], y[retain]),
            'mixed': (x, y)}
  streams = {s: _Batches(*splits[s], work['batch_size'][s], gen)
             for s in splits}
  shape = images.shape[1:]
  model = make_model(work['model']['name'], work['num_classes'],
                     work['model']['width'], shape, channels_last)
  opt = make_optimizer(model.parameters(), work['optim'])
  temperature = float(hp.get('temperature', 1.0))
  teachers = []
  if method in ('bad_teaching', 'scrub'):
    teacher = make_model(work['model']['name'], work['num_classes'],
                         work['model']['width'], shape, channels_last)
    teacher.load_state_dict(model.state_dict())
    teachers.append(teacher.eval())
    if method == 'bad_teaching':
      teachers.append(make_model(work['model']['name'], work['num_classes'],
                                 work['model']['width'], shape,
                                 channels_last).eval())
  masks = None
  if method == 'salun':
    masks = _saliency_mask(model, *splits['forget'],
                           work['batch_size']['forget'],
                           float(hp.get('mask_ratio', 0.5)))
  num_classes = work['num_classes']

  def phase_loss(phase):
    """The loss of one step of `phase` on fresh batches of its splits."""
    if method == 'finetune':
      bx, by = streams['retain'].next()
      return F.cross_entropy(model(bx), by)
    if method == 'neggrad':
      bx, by = streams['forget'].next()
      return -F.cross_entropy(model(bx), by)
    if method == 'neggrad_plus':
      fx, fy = streams['forget'].next()
      rx, ry = streams['retain'].next()
      alpha = float(hp['alpha'])
      return (alpha * F.cross_entropy(model(rx), ry) -
              (1 - alpha) * F.cross_entropy(model(fx), fy))
    if method in ('random_label', 'salun'):
      if phase == 'forget':
        bx, _ = streams['forget'].next()
        random = torch.randint(0, num_classes, (len(bx),), generator=gen)
        return F.cross_entropy(model(bx), random)
      bx, by = streams['retain'].next()
      return float(hp.get('retain_weight', 1.0)) * F.cross_entropy(model(bx),
                                                                   by)
    if method == 'bad_teaching':
      fx, _ = streams['forget'].next()
      rx, _ = streams['retain'].next()
      bx = torch.cat([fx, rx])
      flag = torch.cat([torch.ones(len(fx)), torch.zeros(len(rx))])[:, None]
      with torch.no_grad():
        good = F.softmax(teachers[0](bx) / temperature, 1)
        bad = F.softmax(teachers[1](bx) / temperature, 1)
      target = flag * bad + (1 - flag) * good
      return F.kl_div(F.log_softmax(model(bx) / temperature, 1), target,
                      reduction='batchmean')
    if method == 'scrub':
      split = 'forget' if phase == 'max' else 'retain'
      bx, by = streams[split].next()
      with torch.no_grad():
        teacher_logits = teachers[0](bx)
      logits = model(bx)
      kd = _kd(logits, teacher_logits, temperature)
      if phase == 'max':
        return -kd
      return (float(hp.get('gamma', 1.0)) * F.cross_entropy(logits, by) +
              float(hp.get('alpha', 0.5)) * kd)
    raise ValueError(f'the PyTorch reference has no method {method!r}')

  steps = 0
  model.train()
  for epoch_plan in work['plan']:
    for phase, num_steps in epoch_plan:
      for _ in range(num_steps):
        opt.zero_grad()
        loss = phase_loss(phase)
        loss.backward()
        if masks is not None:
          for p, m in zip(model.parameters(), masks):
            p.grad *= m
        opt.step()
        loss.item()  # Logging the loss, as every reference loop does.
        steps += 1
  return {'wall_seconds': time.perf_counter() - start, 'steps': steps}
