"""DiffAI's training-goal DSL (paper section 4): schedules, goal constructors and their
losses, and the paper-notation / YAML parser."""
from .domain_goals import DOMAIN_GOALS
from .errors import GoalSyntaxError, Origin, SourceError
from .fast_adversarial import FAST_ADVERSARIAL_GOALS, FGSM, GradAlign
from .catalogue import (GOALS, AdvDom, AdvInclusion, BiAdv, BiSample, Box, Coin, DList, DProb,
                        Goal, GoalContext, IFGSM, InclusionSample, LinMix, MI_FGSM, MMR, Mix,
                        Normal, NormalAdv, NormalPoint, PGD, Point, PointA, PointB, Sample, Sub,
                        Uniform, input_box, margin_loss, margin_spec)
from .parser import parse_goal, parse_schedule, to_mapping
from ..schedules import SCHEDULES, Const, Lin, Schedule, Until, step_schedule

InSamp = InclusionSample

__all__ = ["GoalSyntaxError", "Origin", "SourceError",
           "GOALS", "FAST_ADVERSARIAL_GOALS", "DOMAIN_GOALS", "Goal", "GoalContext", "Point",
           "Normal", "Uniform", "NormalPoint", "PointA", "PointB", "IFGSM", "PGD", "MI_FGSM",
           "FGSM", "GradAlign", "Box", "Mix", "LinMix", "DList", "DProb", "Coin", "MMR", "Sub",
           "Sample", "BiSample", "InclusionSample", "InSamp", "NormalAdv", "AdvInclusion",
           "AdvDom", "BiAdv", "input_box", "margin_loss", "margin_spec",
           "parse_goal", "parse_schedule", "to_mapping",
           "SCHEDULES", "Schedule", "Const", "Lin", "Until", "step_schedule"]
