"""Independent NumPy forward pass of ViT and the ResNet hybrid stem.

Written from the model equations (issue 2), reading weights by their published flat
`.npz` keys, so it shares no code with the Flax modules it checks.
"""
import numpy as np


def layer_norm(x, scale, bias, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean)**2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + bias


def gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _same_padding(size, kernel, stride):
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def conv2d(x, w, stride, padding):
  """x (B, H, W, C), w (kh, kw, C, O) HWIO, 'SAME' or 'VALID' (TF/XLA convention)."""
  kh, kw = w.shape[:2]
  if padding == 'SAME':
    ph, pw = _same_padding(x.shape[1], kh, stride), _same_padding(x.shape[2], kw, stride)
    x = np.pad(x, ((0, 0), ph, pw, (0, 0)))
  out_h = (x.shape[1] - kh) // stride + 1
  out_w = (x.shape[2] - kw) // stride + 1
  out = np.zeros((x.shape[0], out_h, out_w, w.shape[3]))
  for i in range(kh):
    for j in range(kw):
      window = x[:, i:i + stride * out_h:stride, j:j + stride * out_w:stride, :]
      out += window @ w[i, j]
  return out


def max_pool_same(x, k=3, stride=2):
  ph, pw = _same_padding(x.shape[1], k, stride), _same_padding(x.shape[2], k, stride)
  x = np.pad(x, ((0, 0), ph, pw, (0, 0)), constant_values=-np.inf)
  out_h, out_w = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
  out = np.full((x.shape[0], out_h, out_w, x.shape[3]), -np.inf)
  for i in range(k):
    for j in range(k):
      out = np.maximum(out, x[:, i:i + stride * out_h:stride, j:j + stride * out_w:stride])
  return out


def std_conv(x, w, stride):
  w = (w - w.mean((0, 1, 2), keepdims=True)) / (w.std((0, 1, 2), keepdims=True) + 1e-5)
  return conv2d(x, w, stride, 'SAME')


def group_norm(x, scale, bias, groups=32, eps=1e-6):
  b, h, w, c = x.shape
  g = x.reshape(b, h, w, groups, c // groups)
  mean = g.mean((1, 2, 4), keepdims=True)
  var = g.var((1, 2, 4), keepdims=True)
  g = (g - mean) / np.sqrt(var + eps)
  return g.reshape(b, h, w, c) * scale.reshape(-1) + bias.reshape(-1)


def resnet_stem(x, p, num_layers):
  x = std_conv(x, p['conv_root/kernel'], 2)
  x = np.maximum(group_norm(x, p['gn_root/scale'], p['gn_root/bias']), 0)
  x = max_pool_same(x)
  for s, units in enumerate(num_layers):
    for u in range(units):
      pre = f'block{s + 1}/unit{u + 1}/'
      stride = 2 if s > 0 and u == 0 else 1
      gn = lambda y, n: group_norm(y, p[pre + n + '/scale'], p[pre + n + '/bias'])
      residual = x
      if pre + 'conv_proj/kernel' in p:
        residual = gn(std_conv(x, p[pre + 'conv_proj/kernel'], stride), 'gn_proj')
      y = np.maximum(gn(std_conv(x, p[pre + 'conv1/kernel'], 1), 'gn1'), 0)
      y = np.maximum(gn(std_conv(y, p[pre + 'conv2/kernel'], stride), 'gn2'), 0)
      y = gn(std_conv(y, p[pre + 'conv3/kernel'], 1), 'gn3')
      x = np.maximum(residual + y, 0)
  return x


def attention(x, p, pre, heads):
  b, t, d = x.shape
  proj = lambda n: np.einsum('btd,dhk->bhtk', x, p[f'{pre}{n}/kernel']) + \
      p[f'{pre}{n}/bias'][None, :, None, :]
  q, k, v = proj('query'), proj('key'), proj('value')
  w = softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // heads))
  y = w @ v  # (b, heads, t, head_dim)
  return np.einsum('bhtk,hko->bto', y, p[f'{pre}out/kernel']) + p[f'{pre}out/bias']


def encoder_block(x, p, i, heads):
  pre = f'Transformer/encoderblock_{i}/'
  ln = lambda y, n: layer_norm(y, p[pre + n + '/scale'], p[pre + n + '/bias'], 1e-6)
  x = x + attention(ln(x, 'LayerNorm_0'), p, pre + 'MultiHeadDotProductAttention_0/',
                    heads)
  y = ln(x, 'LayerNorm_1')
  y = gelu_tanh(y @ p[pre + 'MlpBlock_0/Dense_0/kernel'] + p[pre + 'MlpBlock_0/Dense_0/bias'])
  return x + y @ p[pre + 'MlpBlock_0/Dense_1/kernel'] + p[pre + 'MlpBlock_0/Dense_1/bias']


def vit_forward(images, p, *, num_layers, heads, patch, resnet_layers=None,
                representation=False):
  """images (B, H, W, 3); p: flat dict with our (current-numbering) keys."""
  x = images.astype(np.float64)
  if resnet_layers is not None:
    x = resnet_stem(x, p, resnet_layers)
  x = conv2d(x, p['embedding/kernel'], patch, 'VALID') + p['embedding/bias']
  b, h, w, d = x.shape
  x = x.reshape(b, h * w, d)
  x = np.concatenate([np.broadcast_to(p['cls'], (b, 1, d)), x], axis=1)
  x = x + p['Transformer/posembed_input/pos_embedding']
  for i in range(num_layers):
    x = encoder_block(x, p, i, heads)
  x = layer_norm(x, p['Transformer/encoder_norm/scale'],
                 p['Transformer/encoder_norm/bias'], 1e-6)[:, 0]
  if representation:
    x = np.tanh(x @ p['pre_logits/kernel'] + p['pre_logits/bias'])
  return x @ p['head/kernel'] + p['head/bias']

