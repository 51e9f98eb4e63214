"""What the three recipes share (a model folder runs on its own with common/ beside it).

- npu_config.py: ``--device``/``--precision_mode``, the session config and
  loss scaling on Ascend, NVIDIA GPUs and CPUs.
- run_control.py: the run plan from the checkpoint folder, restore with one
  mapping of TensorFlow errors to reasons, the finite-loss stop, the output
  preflight (every output location a writable folder before the graph is
  built), and the log/checkpoint/evaluation cadence.
- flags.py: flag types ``int_list``, ``float_list``, ``name_list``, ``str2bool``.
- safe_pickle.py: factory of the restricted unpicklers for pickled inputs.
- io_utils.py: atomic writes, ``InputError``/``TrainingError`` and ``run_main``
  (one ``[Error]`` line, exit status 2 or 3).
- modelzoo_summary.py: the throughput meter, run results and the ModelZoo
  summary files; modelzoo_test.sh: the shared body of every test/*.sh.
- distribute.py: data-parallel training (tf.distribute, HCCL on Ascend);
  launch_workers.py: starts the workers of one command on CPU/GPU hosts.
- synthetic_input.py: ``--synthetic_input``, one random in-graph batch in place
  of the data.
"""
