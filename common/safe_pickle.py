"""A pickle reader that admits only the globals a file format needs.

Pickled files from elsewhere (the reference's weights and name files, the
``.bin`` evaluation sets) can name any callable, and ``pickle.load`` would
call it. Each format lists the few globals it really needs; everything else
is refused before it is looked up, so loading cannot run code.
"""
import pickle


def restricted_unpickler(allowed_globals, refusal=pickle.UnpicklingError, why=''):
    """An Unpickler class whose ``find_class`` returns only ``allowed_globals``.

    ``allowed_globals``: {(module, name): object to return}. Any other global
    raises ``refusal('refusing to load module.name' + why)``.
    """
    allowed = dict(allowed_globals)

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            try:
                return allowed[(module, name)]
            except KeyError:
                raise refusal('refusing to load %s.%s%s' % (module, name, why))

    return RestrictedUnpickler
