"""FDD (Feedback-Driven Distillation) rounds, the pure part so far: the student's feedback
(easy / hard training problems) and new similar problems for the hard ones from the offline
teacher (:mod:`distill.generate.perturb`). The rounds as pipeline stages are not built yet."""
