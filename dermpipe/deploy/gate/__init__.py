"""gate: the deployment gate stage, the challenger against chance, the champion, its frozen set and a baseline.

stage.py      the gate stage: GateParams and `run` (components/gate.py calls it)
decision.py   the rules and the decision page (bootstrap statistics: dermpipe.model.evaluation.bootstrap)
challenge.py  what the rules compare: the champion's and the baseline's predictions, the frozen set's rows
"""
