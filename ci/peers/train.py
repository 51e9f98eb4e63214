"""One timed PyTorch training run on one fixed synthetic batch (ci/bench_peer.py).

    .venv-peer/bin/python -m ci.peers.train --model insightface50 --batch_size 32 \
        --steps 5 --precision bf16 --memory_format channels_last --result_json r.json

Writes {"fps", "first_step_s", "ready_s", "losses", "parameters"} to
--result_json: fps over the steps after the first; ready_s from process start
to the end of the first step, as the TensorFlow scripts' run_result.json.
"""
import argparse
import json
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)

from common.modelzoo_summary import process_start_time  # noqa: E402  (TF-free)

MODELS = ('gitloss', 'face_resnet50', 'insightface50', 'insightface100')


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', choices=MODELS, required=True)
    parser.add_argument('--batch_size', type=int, required=True)
    parser.add_argument('--num_classes', type=int, required=True)
    parser.add_argument('--steps', type=int, required=True, help='the first is not timed')
    parser.add_argument('--precision', choices=('fp32', 'bf16'), default='fp32')
    parser.add_argument('--memory_format', choices=('contiguous', 'channels_last'),
                        default='contiguous')
    parser.add_argument('--learning_rate', type=float, default=None,
                        help='default: the recipe\'s')
    parser.add_argument('--result_json', required=True)
    return parser.parse_args(argv)


def build(name, num_classes, learning_rate):
    """(model, optimizer, image shape and dtype, step function's loss closure)."""
    import torch
    from ci.peers import models
    if name == 'gitloss':
        model = models.GitlossNet(pixel_mean=0.13)
        optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate or 1e-3)

        def loss_fn(images, labels):
            logits, features = model(images)
            return models.gitloss_loss(model, logits, features, labels)

        def after_step(labels, update):
            with torch.no_grad():
                models.gitloss_center_update(model, labels, update)
        return model, optimizer, (1, 28, 28), torch.uint8, loss_fn, after_step
    if name == 'face_resnet50':
        model = models.FaceResNet50(num_classes)
        optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate or 1e-6, momentum=0.9)

        def loss_fn(images, labels):
            logits = model(images)
            return torch.nn.functional.cross_entropy(logits.float(), labels,
                                                     reduction='sum'), None
        return model, optimizer, (3, 224, 224), torch.uint8, loss_fn, None
    depth = int(name[len('insightface'):])
    model = models.LResNetEIR(depth, num_classes)
    decayed = {id(p) for p in model.decayed_parameters()}
    groups = [{'params': [p for p in model.parameters() if id(p) in decayed and p.requires_grad],
               'weight_decay': 5e-4},
              {'params': [p for p in model.parameters()
                          if id(p) not in decayed and p.requires_grad], 'weight_decay': 0.0}]
    optimizer = torch.optim.SGD(groups, lr=learning_rate or 1e-3, momentum=0.9)

    def loss_fn(images, labels):
        logits = models.arcface_logits(model(images), model.class_weights, labels)
        return torch.nn.functional.cross_entropy(logits, labels), None
    return model, optimizer, (3, 112, 112), torch.float32, loss_fn, None


def synthetic_batch(batch_size, shape, dtype, num_classes):
    import torch
    generator = torch.Generator().manual_seed(0)
    if dtype == torch.uint8:
        images = torch.randint(0, 256, (batch_size,) + shape, dtype=torch.uint8,
                               generator=generator)
    else:
        images = torch.rand((batch_size,) + shape, generator=generator) * 2.0 - 1.0
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
    return images, labels


def main(argv=None):
    args = parse_args(argv)
    import torch
    from ci.peers.models import trainable_parameters
    torch.manual_seed(0)
    model, optimizer, shape, dtype, loss_fn, after_step = build(
        args.model, args.num_classes, args.learning_rate)
    images, labels = synthetic_batch(args.batch_size, shape, dtype, args.num_classes)
    if args.memory_format == 'channels_last':
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    model.train()
    losses, timed = [], 0.0
    first_step_s = ready_s = None
    for step in range(args.steps):
        t0 = time.time()
        optimizer.zero_grad(set_to_none=True)
        mixed = args.precision == 'bf16'
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=mixed):
            loss, update = loss_fn(images, labels)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step(labels, update)
        losses.append(float(loss.detach()))  # waits for the step, as the TF scripts' sess.run
        now = time.time()
        if step == 0:
            first_step_s, ready_s = now - t0, now - process_start_time()
        else:
            timed += now - t0
    result = {'fps': args.batch_size * (args.steps - 1) / timed if timed else None,
              'first_step_s': first_step_s, 'ready_s': ready_s, 'losses': losses,
              'parameters': trainable_parameters(model),
              'torch': torch.__version__, 'threads': torch.get_num_threads()}
    with open(args.result_json + '.tmp', 'w') as f:
        json.dump(result, f)
    os.replace(args.result_json + '.tmp', args.result_json)
    return 0


if __name__ == '__main__':
    sys.exit(main())
