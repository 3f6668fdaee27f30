from src.utils.instantiators import instantiate_callbacks, instantiate_loggers
from src.utils.utils import check_library_nodes, extras, get_metric_value, task_wrapper

__all__ = ["check_library_nodes", "extras", "get_metric_value", "instantiate_callbacks", "instantiate_loggers",
           "task_wrapper"]
