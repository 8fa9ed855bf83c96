"""Building blocks that DARTS-family methods compose, instead of code inside each method.

* :mod:`.weighting` -- how architecture parameters become op weights: softmax (DARTS Eq. 2),
  softmax over kept ops (DropNAS), sigmoid (FairDARTS), Gumbel-softmax soft / hard with a
  temperature schedule (GDAS), Dirichlet samples (DrNAS); host-side readouts for derivation.
* :mod:`.dropout` -- grouped operation dropout and alpha-adjust (DropNAS).
* :mod:`.partial` -- partial channel connections' edge normalisation (PC-DARTS); the channel
  split itself is a supernet option of the spaces that support it (``partial_channels``).
* :mod:`.perturb` -- perturbation of the mixing weights (SDARTS-RS) and the simplex projection.
* :mod:`.regularisers` -- extra loss terms: Beta-Decay (beta-DARTS), L2 decay over kept
  parameters (DropNAS partial decay), zero-one loss (FairDARTS), Dirichlet KL (DrNAS).
"""
