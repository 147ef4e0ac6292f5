"""train: transfer learning with in-model augmentation and class balancing, then optional fine-tuning.

Phase 1 trains the head on a frozen backbone (or the whole network when training from scratch); phase 2 thaws the
top `fine_tune_layers` backbone layers (BatchNorm stays frozen, as Keras' transfer-learning guide advises) and
trains at `fine_tune_learning_rate`. Each epoch the validation balanced accuracy (BMA, the ISIC metric) is computed
with sklearn; early stopping watches it (or val_loss). Every epoch is checkpointed (resume: weights, optimizer,
random-seed states, early-stopping and LR-on-plateau counters, best weights), so a retried task, or locally the same
`dermpipe run` after a kill, resumes after the last finished epoch, and a finished phase is not re-run.

The Model artifact is a folder: model.keras, training.json, the SavedModel of dermpipe.model.export (saved_model.pb,
variables/: TF Serving and Vertex serve the folder directly) and tensorboard/ logs. On a GPU node the run uses
mixed_float16, MirroredStrategy over all the node's GPUs and, when asked, XLA.

Four stages live here, each one module named after it (its own parameters, if any, beside its run()):
    train           TrainParams and run(...), what the train component calls
    fold_plan       the cross-validation ParallelFor's iterations (the sweep's configurations x folds)
    train_fold      one (configuration, fold) of that ParallelFor: train, validate, predict out of fold
    cross_validate  CrossValParams and run(...): the OOF scores, the sweep's leaderboard and one ensemble
and the helpers the train and train-fold stages share:
    runtime    the run-time environment (GPUs, precision, distribution strategy) and TrainSettings, what the helpers
               read of TrainParams (they do not import the stage module, which imports them)
    inputs     training and validation datasets, from the image files or the prepare stage's TFRecord shards
    callbacks  the per-epoch callbacks, checkpoint location and the persisted per-phase history
    resume     the per-epoch state: its key, atomic locked writes, save and restore
    watchdog   a local train task exits when the `dermpipe run` that started it dies
    loop       train_model: the phases and their fit with checkpoint/resume
    report     training.json's report, the Metrics it yields and the curves HTML
"""
