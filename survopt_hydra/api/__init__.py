"""Entry points for users' own code: the plain-Python factory the seed README shows
(``create_optimizer`` ... ``DistributedOptimizer``), the Lightning glue, and the one call
that checks a composed config's library nodes before anything is built."""
