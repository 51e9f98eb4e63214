"""The networks and losses of the three recipes in PyTorch (NCHW).

- ``GitlossNet`` + ``gitloss_loss``: Gitloss_ID1277/gitloss_net.py and
  gitloss_losses.py (six 3x3 convolutions, 2-d feature, PReLU, 10 logits;
  softmax + center loss + git loss in its reference form, center update).
- ``FaceResNet50``: Face-ResNet50_ID1372/ResNet.py (ResNet-50 v1 with biased
  convolutions, stride on the first 1x1, BGR mean subtraction, fc to the
  label count); the loss is the summed cross-entropy of train_graph.py.
- ``LResNetEIR`` + ``arcface_logits``: InsightFace_TF/nets/layers.py (the
  batch-norm LResNet-E-IR, 'ir' units) and losses/face_losses.py (ArcFace,
  s=64, m=0.5).

Trainable parameter counts equal those of the TensorFlow graphs (E_BN2's
gamma is frozen there and here).
"""
import math

import torch
from torch import nn
import torch.nn.functional as F

GITLOSS_CLASSES = 10
GITLOSS_BLOCKS = ((32, 32), (64, 64), (128, 128))
BGR_MEAN = (104.7546, 124.328, 167.1754)
RESNET50_STAGES = ((3, (64, 64, 256), 1), (4, (128, 128, 512), 2),
                   (6, (256, 256, 1024), 2), (3, (512, 512, 2048), 2))
LRESNET_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
LRESNET_WIDTHS = (64, 128, 256, 512)
EMBEDDING_SIZE = 512


class GitlossNet(nn.Module):
    def __init__(self, pixel_mean=0.0):
        super().__init__()
        layers, channels = [], 1
        for block in GITLOSS_BLOCKS:
            for out in block:
                layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(inplace=True)]
                channels = out
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(128 * 3 * 3, 2)
        self.prelu = nn.PReLU(2, init=0.0)
        self.fc2 = nn.Linear(2, GITLOSS_CLASSES)
        self.pixel_mean = pixel_mean
        self.register_buffer('centers', torch.zeros(GITLOSS_CLASSES, 2))

    def forward(self, images):
        x = images.float() * (1.0 / 255.0) - self.pixel_mean
        features = self.fc1(torch.flatten(self.features(x), 1))
        return self.fc2(self.prelu(features)), features


def gitloss_loss(model, logits, features, labels, lambda_c=1.0, lambda_g=1.0):
    """softmax + lambda_c * center + lambda_g * git (reference form); also
    returns the center update to apply after the optimizer step."""
    features = features.float()
    centers_batch = model.centers[labels]
    softmax = F.cross_entropy(logits.float(), labels)
    center = torch.mean((features - centers_batch) ** 2)
    diffs = features[:, None, :] - centers_batch[None, :, :]
    off_diagonal = 1.0 - torch.eye(labels.shape[0], dtype=features.dtype)
    diffs = diffs * off_diagonal[:, :, None]
    git = torch.mean(1.0 / (1.0 + diffs ** 2))
    return softmax + lambda_c * center + lambda_g * git, (features.detach(), centers_batch)


def gitloss_center_update(model, labels, update, alpha=0.5):
    features, centers_batch = update
    counts = torch.bincount(labels, minlength=GITLOSS_CLASSES)[labels].float()
    diff = alpha * (centers_batch - features) / (1.0 + counts[:, None])
    model.centers.index_add_(0, labels, -diff)


def conv_bn(c_in, c_out, kernel, stride):
    """Face-ResNet50's biased convolution + batch norm (decay 0.99)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2),
                         nn.BatchNorm2d(c_out, eps=1.001e-5, momentum=0.01))


class Bottleneck(nn.Module):
    def __init__(self, c_in, channels, stride, projection):
        super().__init__()
        c0, c1, c2 = channels
        self.shortcut = conv_bn(c_in, c2, 1, stride) if projection else nn.Identity()
        self.conv1 = conv_bn(c_in, c0, 1, stride)
        self.conv2 = conv_bn(c0, c1, 3, 1)
        self.conv3 = conv_bn(c1, c2, 1, 1)
        nn.init.zeros_(self.conv3[1].weight)  # the block starts as its shortcut

    def forward(self, x):
        net = F.relu(self.conv1(x), inplace=True)
        net = F.relu(self.conv2(net), inplace=True)
        return F.relu(self.shortcut(x) + self.conv3(net), inplace=True)


class FaceResNet50(nn.Module):
    def __init__(self, label_count):
        super().__init__()
        self.conv1 = conv_bn(3, 64, 7, 2)
        self.pool1 = nn.MaxPool2d(3, 2, padding=1)
        blocks, c_in = [], 64
        for count, channels, stride in RESNET50_STAGES:
            for index in range(count):
                blocks.append(Bottleneck(c_in, channels, stride if index == 0 else 1,
                                         index == 0))
                c_in = channels[2]
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(2048, label_count)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_in', nonlinearity='relu')
                nn.init.zeros_(m.bias)
        self.register_buffer('bgr_mean', torch.tensor(BGR_MEAN).view(1, 3, 1, 1))

    def forward(self, rgb_images):
        bgr = rgb_images.float().flip(1) - self.bgr_mean
        net = self.pool1(F.relu(self.conv1(bgr), inplace=True))
        net = self.blocks(net)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(net, 1), 1))


def ir_bn(channels):
    """InsightFace's batch norm (decay 0.9, epsilon 2e-5, gamma ~ N(1, 0.002))."""
    bn = nn.BatchNorm2d(channels, eps=2e-5, momentum=0.1)
    nn.init.normal_(bn.weight, 1.0, 0.002)
    return bn


class IRUnit(nn.Module):
    def __init__(self, c_in, depth, stride):
        super().__init__()
        self.stride = stride
        self.shortcut = None
        if c_in != depth:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, depth, 1, stride, bias=False),
                                          ir_bn(depth))
        self.residual = nn.Sequential(
            ir_bn(c_in), nn.Conv2d(c_in, depth, 3, 1, padding=1, bias=False), ir_bn(depth),
            nn.PReLU(depth, init=0.0), nn.Conv2d(depth, depth, 3, stride, padding=1, bias=False),
            ir_bn(depth))

    def forward(self, x):
        if self.shortcut is not None:
            shortcut = self.shortcut(x)
        else:
            shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        return shortcut + self.residual(x)


class LResNetEIR(nn.Module):
    def __init__(self, depth, num_classes, keep_rate=0.4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, padding=1, bias=False), ir_bn(64),
                                  nn.PReLU(64, init=0.0))
        units, c_in = [], 64
        for width, count in zip(LRESNET_WIDTHS, LRESNET_UNITS[depth]):
            for index in range(count):
                units.append(IRUnit(c_in, width, 2 if index == 0 else 1))
                c_in = width
        self.units = nn.Sequential(*units)
        self.head_bn = ir_bn(512)
        self.dropout = nn.Dropout(1.0 - keep_rate)
        self.dense = nn.Linear(512 * 7 * 7, EMBEDDING_SIZE)
        self.embedding_bn = nn.BatchNorm1d(EMBEDDING_SIZE, eps=2e-5, momentum=0.1)
        nn.init.normal_(self.embedding_bn.weight, 1.0, 0.002)
        self.embedding_bn.weight.requires_grad_(False)  # E_BN2's gamma is not trained
        self.class_weights = nn.Parameter(torch.empty(EMBEDDING_SIZE, num_classes))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.xavier_normal_(self.class_weights)

    def forward(self, images):
        net = self.units(self.stem(images))
        net = self.dropout(self.head_bn(net))
        # TF flattens NHWC: same values in another order, same cost.
        return self.embedding_bn(self.dense(torch.flatten(net, 1)))

    def decayed_parameters(self):
        """Those InsightFace's weight decay covers: conv and dense weights,
        the class weights, batch-norm gammas, PReLU alphas (not betas, biases)."""
        decayed = [self.class_weights, self.dense.weight]
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.PReLU)) or (
                    isinstance(m, nn.BatchNorm2d)):
                decayed.append(m.weight)
        return decayed


def arcface_logits(embedding, class_weights, labels, s=64.0, m=0.5):
    """s cos(theta + m) for the label class (s (cos theta - m sin m) past
    pi - m), s cos theta elsewhere, as losses/face_losses.py."""
    embedding = embedding.float()
    weights = class_weights.float()
    cos_t = (F.normalize(embedding, dim=1, eps=1e-6) @ F.normalize(weights, dim=0, eps=1e-6))
    cos_t = cos_t.clamp(-1.0, 1.0)
    cos_y = cos_t.gather(1, labels[:, None]).squeeze(1)
    sin_y = torch.sqrt(torch.clamp(1.0 - cos_y ** 2, min=1e-12))
    with_margin = s * (cos_y * math.cos(m) - sin_y * math.sin(m))
    fallback = s * (cos_y - math.sin(m) * m)
    target = torch.where(cos_y > math.cos(math.pi - m), with_margin, fallback)
    logits = s * cos_t
    return logits.scatter(1, labels[:, None], target[:, None])


def trainable_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
