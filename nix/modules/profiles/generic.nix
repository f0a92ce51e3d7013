# generic: the default image of fresh installations, a blank canvas. It is the shared OpenStack
# guest base and nothing else; customisation happens on top of it, not in it.
{ ... }:
{
  hephaestus.profile = "generic";
  hephaestus.boot = "uefi";
}
