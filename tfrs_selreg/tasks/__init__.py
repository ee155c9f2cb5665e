"""S-LLMR for any ``tfrs.Model``: the regularization task and the teacher pairs it reads.

In a model's ``compute_loss``::

    pairs = self.teacher_pairs(features["user_id"], training=training)       # TeacherPairs
    loss = self.task(query, candidates) + self.llmr(pairs, query_embeddings=query,
                                                    candidate_model=self.candidate_model, training=training)

:class:`TeacherPairs` looks a batch's users up in the labels written by ``tfrs-selreg score``;
:class:`SelectiveLLMRegularization` turns them into the gated teacher loss. Neither is part of what the
model serves: export the model without them (``README.md``, "Add S-LLMR to your own model").
"""

from tfrs_selreg.tasks.regularization import SelectiveLLMRegularization, by_unique, with_item_gradient
from tfrs_selreg.tasks.teacher_pairs import TeacherPairs

__all__ = ["SelectiveLLMRegularization", "TeacherPairs", "by_unique", "with_item_gradient"]
